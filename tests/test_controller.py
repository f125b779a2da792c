"""conventional.controller: log-probabilities and the REINFORCE gradient against hand computations, and
AutoGAN's update against a transcription of the authors' train_controller."""
import numpy as np
import pytest
import torch

from stylenas.conventional.controller import (AGANController, AutoGANController, EMABaseline, Rollout, entropy_bonus,
                                              reinforce_loss)


def sigmoid(x):
    return 1 / (1 + np.exp(-x))


def log_softmax(z):
    z = z - z.max()
    return z - np.log(np.exp(z).sum())


def lstm_cell(x, h, c, w_ih, w_hh, b):
    """PyTorch's LSTM cell written out: gates i, f, g, o."""
    gates = w_ih @ x + w_hh @ h + b
    i, f, g, o = np.split(gates, 4)
    c = sigmoid(f) * c + sigmoid(i) * np.tanh(g)
    return sigmoid(o) * np.tanh(c), c


def params(module):
    return {k: v.detach().double().numpy() for k, v in module.state_dict().items()}


def test_autogan_log_probs_by_hand():
    torch.manual_seed(0)
    ctrl = AutoGANController([2, 3, 4], hidden=5)
    p = params(ctrl)
    actions = torch.tensor([[1, 2, 0], [0, 0, 3]])
    rollout = ctrl(actions=actions)
    for b in range(2):
        h, c, x = np.zeros(5), np.zeros(5), np.zeros(5)
        total, entropy = 0.0, 0.0
        offset = 0
        for t, n in enumerate([2, 3, 4]):
            h, c = lstm_cell(x, h, c, p["lstm.weight_ih"], p["lstm.weight_hh"], p["lstm.bias_ih"] + p["lstm.bias_hh"])
            lp = log_softmax(p[f"decoders.{t}.weight"] @ h + p[f"decoders.{t}.bias"])
            a = int(actions[b, t])
            total += lp[a]
            entropy -= (np.exp(lp) * lp).sum()
            x = p["encoder.weight"][offset + a]  # one embedding table for all decisions
            offset += n
        assert rollout.log_probs[b].item() == pytest.approx(total, abs=1e-5)
        assert rollout.entropies[b].item() == pytest.approx(entropy, abs=1e-5)


def test_autogan_sampling_follows_the_generator_and_scores_back():
    ctrl = AutoGANController([2, 3, 3, 2])
    one = ctrl(batch=6, generator=torch.Generator().manual_seed(1))
    two = ctrl(batch=6, generator=torch.Generator().manual_seed(1))
    assert torch.equal(one.actions, two.actions)
    assert (one.actions < torch.tensor([2, 3, 3, 2])).all()
    torch.testing.assert_close(ctrl(actions=one.actions).log_probs, one.log_probs)
    # a start state (a kept prefix of the previous stage) changes the distribution
    state = (torch.ones(6, 100), torch.ones(6, 100))
    assert not torch.allclose(ctrl(actions=one.actions, state=state).log_probs, one.log_probs)


def test_reinforce_gradient_by_hand():
    """d loss / d (bias of the last head) = -(1/B) sum_i A_i (onehot_i - p_i) + beta (1/B) sum_i p_i (log p_i + H_i)."""
    torch.manual_seed(1)
    ctrl = AutoGANController([3, 4], hidden=6)
    actions = torch.tensor([[0, 1], [2, 3], [1, 1]])
    rewards = [2.0, 5.0, 3.5]
    baseline = EMABaseline(0.9)
    baseline.value = 3.0
    b = baseline.update(rewards)
    assert b == pytest.approx(0.9 * 3.0 + 0.1 * np.mean(rewards))
    beta = 0.1
    rollout = ctrl(actions=actions)
    loss, adv = reinforce_loss(rollout, rewards, b, beta)
    np.testing.assert_allclose(adv.detach().numpy(), np.array(rewards) - b, rtol=1e-6)
    assert loss.item() == pytest.approx(
        (-(adv * rollout.log_probs).sum() / 3 - beta * rollout.entropies.sum() / 3).item(), rel=1e-6)
    loss.backward()

    p = params(ctrl)
    expected = np.zeros(4)
    for i in range(3):
        h, c = np.zeros(6), np.zeros(6)
        weights = p["lstm.weight_ih"], p["lstm.weight_hh"], p["lstm.bias_ih"] + p["lstm.bias_hh"]
        h, c = lstm_cell(np.zeros(6), h, c, *weights)
        h, c = lstm_cell(p["encoder.weight"][int(actions[i, 0])], h, c, *weights)
        lp = log_softmax(p["decoders.1.weight"] @ h + p["decoders.1.bias"])
        prob, onehot = np.exp(lp), np.eye(4)[int(actions[i, 1])]
        entropy = -(prob * lp).sum()
        expected += -(rewards[i] - b) * (onehot - prob) / 3 + beta * prob * (lp + entropy) / 3
    np.testing.assert_allclose(ctrl.decoders[1].bias.grad.numpy(), expected, rtol=1e-4, atol=1e-7)


def test_ema_baseline_persists_and_round_trips():
    base = EMABaseline(0.9)
    assert base.update([1.0, 3.0]) == 2.0  # the first rewards set it
    assert base.update([4.0]) == pytest.approx(0.9 * 2 + 0.1 * 4)
    other = EMABaseline()
    other.load_state_dict(base.state_dict())
    assert other.update([0.0]) == pytest.approx(0.9 * (0.9 * 2 + 0.4))


def test_agan_log_probs_by_hand():
    """Ops: softmax(C tanh(h / T)), T 5, C 2.5; vectors: Bernoulli(sigmoid(C tanh(h / T))), T = C = 1,
    one bit per available tensor; two-layer LSTM; embeddings per segment."""
    torch.manual_seed(2)
    ctrl = AGANController([(4, 3), (3, 2)], hidden=5)
    p = params(ctrl)
    sample = [([3, 0, 2], [[1, 0], [0, 1, 1]]), ([1, 2], [[0, 1]])]
    rollout = ctrl(actions=[sample])
    hs, cs = [np.zeros(5), np.zeros(5)], [np.zeros(5), np.zeros(5)]

    def step(x):
        for layer in range(2):
            hs[layer], cs[layer] = lstm_cell(x, hs[layer], cs[layer], p[f"lstm.weight_ih_l{layer}"],
                                             p[f"lstm.weight_hh_l{layer}"],
                                             p[f"lstm.bias_ih_l{layer}"] + p[f"lstm.bias_hh_l{layer}"])
            x = hs[layer]
        return x

    x, total = np.zeros(5), 0.0
    for s, (ops, vecs) in enumerate(sample):
        k = len(ops)
        for i, op in enumerate(ops):
            h = step(x)
            lp = log_softmax(2.5 * np.tanh((p[f"op_head.{s}.weight"] @ h + p[f"op_head.{s}.bias"]) / 5.0))
            total += lp[op]
            x = p[f"op_embed.{s}.weight"][op]
            if i == k - 1:
                break
            h = step(x)
            prob = sigmoid(np.tanh(p[f"adj_head.{s}.weight"] @ h + p[f"adj_head.{s}.bias"]))[:i + 2]
            bits = np.array(vecs[i], dtype=float)
            total += (bits * np.log(prob) + (1 - bits) * np.log(1 - prob)).sum()
            x = p[f"adj_embed.{s}.weight"] @ np.pad(bits, (0, k - i - 2))
    assert rollout.log_probs.item() == pytest.approx(total, abs=1e-5)
    sampled = ctrl(batch=3, generator=torch.Generator().manual_seed(0))
    for arch in sampled.actions:
        assert [len(ops) for ops, _ in arch] == [3, 2] and [len(v) for v in arch[0][1]] == [2, 3]
    torch.testing.assert_close(ctrl(actions=sampled.actions).log_probs, sampled.log_probs)


def authors_train_controller(phases, entropy_coeff=1e-3, decay=0.9):
    """The arithmetic of VITA-Group/AutoGAN functions.py ``train_controller`` (lines 246-287) with
    ctrl_sample_batch 1, transcribed on tensors: per phase ``baseline = None``; per step the IS plus
    entropy_coeff x the (T, 1) column of per-decision entropies, an EMA baseline of that column, and
    the loss ``(-selected_log_probs * adv).sum()`` of a (1, T) row times a (T, 1) column.
    ``phases``: lists of (IS, entropies [T], log-probs [T]); returns per step (loss, adv column, grad
    of the loss with respect to the log-probs)."""
    out = []
    for phase in phases:
        baseline = None
        for is_score, entropies, log_probs in phase:
            selected_log_probs = torch.tensor([log_probs], dtype=torch.float64, requires_grad=True)  # (1, T)
            column = torch.tensor(entropies, dtype=torch.float64)[:, None]  # (T, 1): torch.cat(entropies, 0)
            rewards = torch.tensor([is_score], dtype=torch.float64).unsqueeze(-1) + entropy_coeff * column
            baseline = rewards if baseline is None else decay * baseline.detach() + (1 - decay) * rewards
            adv = rewards - baseline
            loss = (-selected_log_probs * adv).sum()
            loss.backward()
            out.append((loss.item(), adv[:, 0].tolist(), selected_log_probs.grad[0].tolist()))
    return out


def test_autogan_update_replays_the_authors_train_controller():
    """Our AutoGAN update (entropy_bonus, an EMA baseline reset per phase, reinforce_loss without an
    entropy term) on a fixed sequence of rewards and entropies: the advantage is the authors' summed
    over their T decisions divided by T, and the loss and its gradient are 1/T of theirs (a factor
    Adam does not see)."""
    rng = np.random.default_rng(0)
    T = 5
    phases = [[(float(rng.uniform(1, 9)), rng.uniform(0, 1.4, T).tolist(), (-rng.uniform(0.1, 2, T)).tolist())
               for _ in range(3)] for _ in range(2)]
    theirs = authors_train_controller(phases)
    baseline, k = EMABaseline(0.9), 0
    for phase in phases:
        baseline.reset()  # AutoGANSearch.start_controller_phase with baseline "phase"
        for is_score, entropies, log_probs in phase:
            log_p = torch.tensor(log_probs, dtype=torch.float64, requires_grad=True)
            rollout = Rollout(None, log_p.sum()[None], torch.tensor([sum(entropies)], dtype=torch.float64))
            shaped = entropy_bonus([is_score], rollout, 1e-3, T)
            loss, adv = reinforce_loss(rollout, shaped, baseline.update(shaped), 0.0)
            loss.backward()
            loss_ref, adv_ref, grad_ref = theirs[k]
            assert adv.item() == pytest.approx(sum(adv_ref) / T, rel=1e-9, abs=1e-12)
            assert loss.item() == pytest.approx(loss_ref / T, rel=1e-9, abs=1e-12)
            np.testing.assert_allclose(log_p.grad.numpy(), np.array(grad_ref) / T, rtol=1e-9, atol=1e-12)
            k += 1
    first_steps = [theirs[0], theirs[3]]  # the baseline restarts: no advantage at a phase's first step
    assert all(abs(a) < 1e-12 for step in first_steps for a in step[1])
    assert any(abs(a) > 1e-4 for step in theirs for a in step[1])


def test_persistent_and_phase_baselines_differ_after_a_phase():
    base = EMABaseline(0.9)
    base.update([2.0])
    base.update([4.0])
    kept = base.value
    base.reset()
    assert kept == pytest.approx(2.2) and base.update([7.0]) == 7.0  # restarted: the first reward sets it
