"""The StyleGAN2 search space of alphaGAN (Tian et al., sections 4.2, 6.1, 6.2).

Every conv layer of the synthesis network becomes a mixed layer holding one candidate per
operation (normal: conv_1x1, conv_3x3, conv_5x5; up: deconv, nearest_conv, bilinear_conv),
each with its own weights and style affine, combined as sum_k softmax(alpha)_k op_k(x)
(eq. 8). ``micro`` shares one alpha vector among all normal layers and one among all up
layers; ``macro`` gives every layer its own. With ``dynamic_w`` every latent slot (see
``stylenas.nn.networks.w_slots``) reads sum_i softmax(beta)_i W_i over the 8 mapping outputs;
without it, W_8 as StyleGAN2. With ``torgb_w="tied"`` (the paper's space, section 4.2 and
Fig. 1) a toRGB shares the beta of the next block's up-sampling conv and only the last toRGB
has its own, so 2 log2(R) - 2 betas; ``"free"`` gives every toRGB its own beta.

The architecture parameters live in ``arch`` (a ParameterDict) and are returned by
``arch_parameters()``; everything else is a weight (``weight_parameters()``), so the two
go to two optimisers.
"""

from __future__ import annotations

import torch
from torch import nn

from ..nn.layers import NORMAL_OPS, UP_OPS, SynthesisLayer
from ..nn.networks import NUM_WS, Generator, SynthesisNetwork
from .genotype import Genotype

SPACES = ("micro", "macro")
ARCH_INIT_SCALE = 1e-3  # alphas start near uniform, as in DARTS and alphaGAN's code


class ArchitectureSplit:
    """What the alphaGAN searcher needs of a supernet (StyleGAN2's and the conventional ones): the
    architecture parameters (an ``arch`` ParameterDict) apart from every other weight."""

    def arch_parameters(self):
        return list(self.arch.parameters())

    def weight_parameters(self):
        arch = {id(p) for p in self.arch_parameters()}
        return [p for p in self.parameters() if id(p) not in arch]


class MixedSynthesisLayer(nn.Module):
    def __init__(self, ops, in_channels, out_channels, w_dim, resolution, conv_clamp=None):
        super().__init__()
        self.ops = tuple(ops)
        self.candidates = nn.ModuleDict({op: SynthesisLayer(in_channels, out_channels, w_dim, resolution, op,
                                                            conv_clamp) for op in self.ops})

    def forward(self, x, w, op_weights, noise_mode="random", fused=None):
        out = 0
        for weight, op in zip(op_weights, self.ops):
            out = out + weight * self.candidates[op](x, w, noise_mode=noise_mode, fused=fused)
        return out


def _key(name):
    return name.replace(".", "_")


class SuperSynthesisNetwork(ArchitectureSplit, SynthesisNetwork):
    def __init__(self, resolution, space="micro", dynamic_w=True, torgb_w="tied", **kwargs):
        if space not in SPACES:
            raise ValueError(f"search space must be one of {', '.join(SPACES)}, got {space!r}")
        self.space, self.dynamic_w = space, dynamic_w
        super().__init__(resolution, torgb_w=torgb_w, **kwargs)
        # A slot's beta is named after its conv layer (or the last toRGB, which has no conv).
        slot_name = {}
        for (name, kind), slot in zip(self.layout, self.w_slots):
            if kind != "torgb" or slot not in slot_name:
                slot_name[slot] = name
        self.beta_keys = [f"beta_{_key(slot_name[slot])}" for slot in self.w_slots]  # per style layer
        if dynamic_w:
            for key in dict.fromkeys(self.beta_keys):
                self.arch[key] = nn.Parameter(ARCH_INIT_SCALE * torch.randn(NUM_WS))

    def alpha_key(self, name, kind):
        return f"alpha_{kind}" if self.space == "micro" else f"alpha_{_key(name)}"

    def make_conv(self, name, kind, op, in_channels, out_channels, w_dim, resolution, conv_clamp):
        if "arch" not in self._modules:
            self.arch = nn.ParameterDict()
        ops = UP_OPS if kind == "up" else NORMAL_OPS
        key = self.alpha_key(name, kind)
        if key not in self.arch:
            self.arch[key] = nn.Parameter(ARCH_INIT_SCALE * torch.randn(len(ops)))
        return MixedSynthesisLayer(ops, in_channels, out_channels, w_dim, resolution, conv_clamp)

    def layer_kwargs(self, index):
        name, kind = self.layout[index]
        return {"op_weights": torch.softmax(self.arch[self.alpha_key(name, kind)], dim=0)}

    def select_w(self, index, ws):
        if not self.dynamic_w:
            return ws[:, NUM_WS - 1]
        weights = torch.softmax(self.arch[self.beta_keys[index]], dim=0)
        return torch.einsum("nkd,k->nd", ws, weights.to(ws.dtype))

    def op_weights(self, name, kind):
        return torch.softmax(self.arch[self.alpha_key(name, kind)].detach(), dim=0)

    def w_weights(self, name):
        if not self.dynamic_w:
            return torch.nn.functional.one_hot(torch.tensor(NUM_WS - 1), NUM_WS).float()
        index = [n for n, _ in self.layout].index(name)
        return torch.softmax(self.arch[self.beta_keys[index]].detach(), dim=0)


class SuperGenerator(ArchitectureSplit, Generator):
    """Mapping network + supernet synthesis network; the discriminator stays fixed (paper)."""

    def make_synthesis(self, resolution, **kwargs):
        return SuperSynthesisNetwork(resolution, **kwargs)

    def arch_parameters(self):
        return self.synthesis.arch_parameters()

    def genotype(self, channels, source=None):
        """Derive the discrete architecture: argmax of every alpha and beta (section 4.2)."""
        net = self.synthesis
        layers = []
        for (name, kind), beta_key in zip(net.layout, net.beta_keys):
            entry = {"name": name}
            if kind != "torgb":
                ops = UP_OPS if kind == "up" else NORMAL_OPS
                p = net.op_weights(name, kind)
                entry["op"] = ops[int(p.argmax())]
                entry["op_weights"] = {op: round(float(v), 6) for op, v in zip(ops, p)}
            q = net.w_weights(name)
            entry["w"] = int(q.argmax()) + 1
            if net.dynamic_w and beta_key == f"beta_{_key(name)}":  # a tied toRGB shows its w only
                entry["w_weights"] = [round(float(v), 6) for v in q]
            layers.append(entry)
        paradigm = net.space + ("+dynamic_w" if net.dynamic_w else "")
        arch = {key: [float(v) for v in value.detach().cpu()] for key, value in net.arch.items()}
        return Genotype(self.resolution, layers, paradigm, channels=dict(channels), arch_parameters=arch,
                        source=source, torgb_w=net.torgb_w).validate()

    def discrete_state_dict(self, genotype):
        """The weights of the discrete network of `genotype` taken from this supernet (the
        chosen candidate of every mixed layer)."""
        chosen = {layer["name"]: layer["op"] for layer in genotype.layers if "op" in layer}
        state = {}
        for key, value in self.state_dict().items():
            if key.startswith("synthesis.arch."):
                continue
            if ".candidates." in key:
                prefix, rest = key.split(".candidates.", 1)
                op, param = rest.split(".", 1)
                layer_name = prefix[len("synthesis.blocks."):]
                if chosen.get(layer_name) != op:
                    continue
                key = f"{prefix}.{param}"
            state[key] = value
        return state
