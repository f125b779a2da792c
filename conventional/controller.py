"""The LSTM controllers of the reinforcement-learning searchers and their REINFORCE update.

- ``AutoGANController`` (Gong et al. 2019, section 3.3; the authors' models_search/controller.py):
  one ``LSTMCell`` (hidden 100), one embedding table over the tokens of all decisions, one linear
  head per decision; the first input is a zero vector and the starting state either zeros or the
  state a previous stage's controller reached after sampling a kept prefix (multi-level search).
- ``AGANController`` (Wang and Huan 2019, sections 3.1 and 4.2): a two-layer LSTM (100 units) run
  through three segments; each segment emits operation, adjacency vector, operation, ... (6
  operations and 5 vectors). Operations: P(y = i) ~ exp(C tanh(h_i / T)) with T = 5, C = 2.5;
  adjacency bits: independent Bernoulli with p_i = sigmoid(C tanh(h_i / T)), T = C = 1. The
  embedding of operations and the projection of vectors are shared within a segment only.

``reinforce_loss`` is the policy gradient both use: with rewards R_i of the B sampled
architectures and the baseline b, loss = -(1/B) sum_i (R_i - b) sum_t log p(a_it | a_i,<t)
- beta (1/B) sum_i H_i, each sample's log-probabilities weighted by its own advantage.
``EMABaseline`` is b <- decay b + (1 - decay) mean_i R_i; its owner decides when it restarts.

AutoGAN's update as the authors' functions.py ``train_controller`` computes it: the entropy bonus
is part of the reward before the baseline (R'_i = IS_i + 1e-3 H_t for each decision t, the baseline
an EMA of R' restarted at every controller phase), and no separate entropy term. Their (1, T) row
of log-probabilities times the (T, 1) column of advantages sums to T (sum_t log p_t)(R' - b) with
R' = IS + 1e-3 mean_t H_t: ``entropy_bonus`` gives that R' (entropy detached: it is a reward), and
``reinforce_loss(..., entropy_weight=0)`` the loss without the factor T, to which Adam is invariant.
Adam betas (0, 0.9): search.py's ``create_ctrler`` passes the script's --beta1 0.0 --beta2 0.9.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["Rollout", "AutoGANController", "AGANController", "EMABaseline", "entropy_bonus", "reinforce_loss"]

HIDDEN = 100
AUTOGAN_LR = 3.5e-4  # Adam (the authors' --ctrl_lr)
AUTOGAN_ENTROPY = 1e-3
AUTOGAN_BETAS = (0.0, 0.9)  # the authors' search.py create_ctrler: (args.beta1, args.beta2) of autogan_search.sh
AGAN_LR = 6e-4
AGAN_ENTROPY = 1e-4
BASELINE_DECAY = 0.9
AGAN_OP_T, AGAN_OP_C = 5.0, 2.5
AGAN_ADJ_T, AGAN_ADJ_C = 1.0, 1.0


@dataclass
class Rollout:
    """B sampled (or scored) decision sequences: ``actions`` [B, T] (AGAN: a list per sample of
    op indices and bit lists), ``log_probs`` [B] (summed over decisions, differentiable),
    ``entropies`` [B] (summed over decisions, differentiable), ``state`` the LSTM state reached."""

    actions: object
    log_probs: torch.Tensor
    entropies: torch.Tensor
    state: tuple | None = None


def _categorical(logits, given, generator):
    """(action [B], log p [B], entropy [B]) of a softmax over ``logits`` [B, K]: ``given`` [B] is
    scored as is, else an action is drawn with ``generator``."""
    log_p = F.log_softmax(logits, dim=-1)
    if given is None:
        given = torch.multinomial(log_p.exp(), 1, generator=generator).squeeze(1)
    entropy = -(log_p.exp() * log_p).sum(-1)
    return given, log_p.gather(1, given[:, None]).squeeze(1), entropy


class AutoGANController(nn.Module):
    """``choices``: the number of options of each decision, in order (a stage of AutoGAN: conv,
    norm, up, shortcut and, from cell 2 on, the skip number)."""

    def __init__(self, choices, hidden=HIDDEN):
        super().__init__()
        self.choices, self.hidden = [int(c) for c in choices], hidden
        self.offsets = [sum(self.choices[:i]) for i in range(len(self.choices))]
        self.lstm = nn.LSTMCell(hidden, hidden)
        self.encoder = nn.Embedding(sum(self.choices), hidden)
        self.decoders = nn.ModuleList(nn.Linear(hidden, c) for c in self.choices)

    def forward(self, batch=1, actions=None, state=None, generator=None):
        """Sample ``batch`` sequences with ``generator`` (``actions`` None) or score ``actions``
        [B, T]; ``state`` (h [B, H], c [B, H]) starts the LSTM (default zeros)."""
        if actions is not None:
            actions = torch.as_tensor(actions, dtype=torch.long)
            batch = actions.shape[0]
        device = self.encoder.weight.device
        x = torch.zeros(batch, self.hidden, device=device)
        if state is None:
            state = (torch.zeros(batch, self.hidden, device=device), torch.zeros(batch, self.hidden, device=device))
        taken, log_probs, entropies = [], [], []
        for i, head in enumerate(self.decoders):
            state = self.lstm(x, state)
            given = None if actions is None else actions[:, i].to(device)
            action, log_p, entropy = _categorical(head(state[0]), given, generator)
            taken.append(action)
            log_probs.append(log_p)
            entropies.append(entropy)
            x = self.encoder(action + self.offsets[i])
        return Rollout(torch.stack(taken, 1), torch.stack(log_probs, 1).sum(1), torch.stack(entropies, 1).sum(1),
                       state)


class AGANController(nn.Module):
    """``segments``: per segment (number of operations in its vocabulary, operations emitted).
    A segment with k operations emits o_0, a_0, o_1, ..., a_{k-2}, o_{k-1}; vector a_i has one bit
    per tensor available at that point (i + 2: the module input, o_0's output, o_1..o_i's outputs).
    ``actions`` of one sample: per segment ``(ops [k], vectors [k - 1 lists of bits])``."""

    def __init__(self, segments, hidden=HIDDEN, layers=2, op_temperature=AGAN_OP_T, op_clip=AGAN_OP_C,
                 adj_temperature=AGAN_ADJ_T, adj_clip=AGAN_ADJ_C):
        super().__init__()
        self.segments = [(int(n), int(k)) for n, k in segments]
        self.hidden, self.layers = hidden, layers
        self.op_t, self.op_c, self.adj_t, self.adj_c = op_temperature, op_clip, adj_temperature, adj_clip
        self.lstm = nn.LSTM(hidden, hidden, num_layers=layers)
        self.op_embed = nn.ModuleList(nn.Embedding(n, hidden) for n, _ in self.segments)
        self.adj_embed = nn.ModuleList(nn.Linear(k, hidden, bias=False) for _, k in self.segments)
        self.op_head = nn.ModuleList(nn.Linear(hidden, n) for n, _ in self.segments)
        self.adj_head = nn.ModuleList(nn.Linear(hidden, k) for _, k in self.segments)

    def _step(self, x, state):
        out, state = self.lstm(x[None], state)
        return out[0], state

    def forward(self, batch=1, actions=None, generator=None):
        """Sample ``batch`` architectures with ``generator`` or score ``actions`` (a list per
        sample); returns a Rollout whose ``actions`` is that list."""
        if actions is not None:
            batch = len(actions)
        device = self.op_head[0].weight.device
        x = torch.zeros(batch, self.hidden, device=device)
        state = None
        log_probs, entropies = torch.zeros(batch, device=device), torch.zeros(batch, device=device)
        taken = [[] for _ in range(batch)]
        for s, (n_ops, k) in enumerate(self.segments):
            ops_s, vecs_s = [], []
            for i in range(k):
                h, state = self._step(x, state)
                logits = self.op_c * torch.tanh(self.op_head[s](h) / self.op_t)
                given = None if actions is None else torch.tensor([a[s][0][i] for a in actions], device=device)
                op, log_p, entropy = _categorical(logits, given, generator)
                log_probs, entropies = log_probs + log_p, entropies + entropy
                ops_s.append(op)
                x = self.op_embed[s](op)
                if i == k - 1:
                    break
                h, state = self._step(x, state)
                width = i + 2  # tensors available to o_{i+1}
                logits = (self.adj_c * torch.tanh(self.adj_head[s](h) / self.adj_t))[:, :width]
                if actions is None:
                    bits = torch.bernoulli(torch.sigmoid(logits), generator=generator)
                else:
                    bits = torch.tensor([a[s][1][i] for a in actions], dtype=logits.dtype, device=device)
                    if bits.shape != logits.shape:
                        raise ValueError(f"segment {s}: adjacency vector {i} must have {width} bits")
                # Bernoulli log-likelihood and entropy through the logits (stable sigmoid cross-entropy)
                log_probs = log_probs - F.binary_cross_entropy_with_logits(logits, bits, reduction="none").sum(1)
                p = torch.sigmoid(logits)
                entropies = entropies + F.binary_cross_entropy_with_logits(logits, p, reduction="none").sum(1)
                vecs_s.append(bits)
                x = self.adj_embed[s](F.pad(bits, (0, k - width)))
            for b in range(batch):
                taken[b].append(([int(o[b]) for o in ops_s], [[int(v) for v in vec[b]] for vec in vecs_s]))
        return Rollout(taken, log_probs, entropies)


class EMABaseline:
    """b <- decay b + (1 - decay) mean(R); the first rewards after a ``reset`` set it."""

    def __init__(self, decay=BASELINE_DECAY):
        self.decay, self.value = decay, None

    def reset(self):
        self.value = None

    def update(self, rewards):
        mean = float(torch.as_tensor(rewards, dtype=torch.float64).mean())
        self.value = mean if self.value is None else self.decay * self.value + (1 - self.decay) * mean
        return self.value

    def state_dict(self):
        return {"decay": self.decay, "value": self.value}

    def load_state_dict(self, state):
        self.decay, self.value = state["decay"], state["value"]


def entropy_bonus(rewards, rollout, weight, decisions):
    """AutoGAN's rewards with their entropy bonus, R'_i = R_i + weight * H_i / decisions (the mean
    entropy per decision of sample i, detached), float64 [B]; see the module docstring."""
    entropy = rollout.entropies.detach().double().cpu() / decisions
    return torch.as_tensor(rewards, dtype=torch.float64) + weight * entropy


def reinforce_loss(rollout, rewards, baseline, entropy_weight):
    """-(1/B) sum_i (R_i - b) log p(seq_i) - entropy_weight (1/B) sum_i H_i; ``baseline`` is b
    after this step's update (as the authors' code and ENAS). Returns (loss, advantages [B])."""
    rewards = torch.as_tensor(rewards, dtype=rollout.log_probs.dtype, device=rollout.log_probs.device)
    advantages = rewards - baseline
    loss = -(advantages * rollout.log_probs).mean() - entropy_weight * rollout.entropies.mean()
    return loss, advantages
