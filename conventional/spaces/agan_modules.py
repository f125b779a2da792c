"""AGAN's search space (Wang and Huan, 2019): the generator's up-sampling module and the
discriminator's down-sampling and normal modules (the search: ``conventional.searchers.agan``).

Operations (section 3.2): 16 normal ops (identity, conv 1x1 / 3x3, dilated conv 3x3, depthwise-
separable conv 3/5/7, 1xn-then-nx1 conv n = 3/5/7, avg and max pooling 3/5/7); up-sampling ops:
transposed conv 3/5/7 (stride 2) or nearest-neighbour x2 followed by any normal op; down-sampling
ops: a normal op followed by stride-2 average pooling, or the pooling first. Convolutions are
BN-ReLU-Conv in G and ReLU-Conv in D (nothing between the 1xn and nx1 convs).

Module construction (section 3.2, Fig. 2): a controller segment o_0, a_0, o_1, ..., a_{k-2},
o_{k-1} builds a module of inputs h_{i-1}, h_i: N = {x_0 = h_i, x_1 = o_0(h_{i-1})}; op o_j
(j >= 1) takes the sum of the tensors a_{j-1} selects (x_0 when none) and adds its output to N;
the tensors never used as an input are concatenated and a 1x1 conv restores the channel count.
Heuristics: o_0 up- (down-) samples when the previous module did; in an up-sampling module the ops
applied to x_0, x_1 up-sample; in a down-sampling module the ops producing the concatenated tensors
down-sample. Where the paper leaves a case open we: up-sample (nearest) a low-resolution input that
is summed with high-resolution ones (then the op does not up-sample), and resize a concatenated
x_0 or x_1 of the wrong size (nearest x2 in G, average pooling in D).

Meta-architectures (Fig. 3): G = linear -> 3 up-sampling modules -> BN, ReLU, conv 3x3, tanh;
D = conv 3x3 -> 2 down-sampling modules -> 2 normal modules -> ReLU, global sum pooling, linear,
spectral norm on D's layers (section 4.3). A module's h_{i-1} is the output of the module before
the previous one (the linear / stem output for the first module, which then has h_{i-1} = h_i).

Genotype body (search space ``agan``): ``{"generator": {"up": S}, "discriminator": {"down": S,
"normal": S}}`` with S = {"ops": [names], "inputs": [k - 1 bit lists]}, one segment of the
controller each; ``build_agan`` gives its G and D.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ...search.genotype import GenotypeError
from ..genotypes import ConventionalGenotype
from .discriminators import with_sn

NORMAL_OPS = ("identity", "conv_1x1", "conv_3x3", "dil_conv_3x3", "sep_conv_3x3", "sep_conv_5x5", "sep_conv_7x7",
              "conv_1x3_3x1", "conv_1x5_5x1", "conv_1x7_7x1", "avg_pool_3x3", "max_pool_3x3", "avg_pool_5x5",
              "max_pool_5x5", "avg_pool_7x7", "max_pool_7x7")
UP_OPS = ("deconv_3x3", "deconv_5x5", "deconv_7x7") + tuple(f"nearest_{op}" for op in NORMAL_OPS)
DOWN_OPS = tuple(f"{op}_then_pool" for op in NORMAL_OPS) + tuple(f"pool_then_{op}" for op in NORMAL_OPS)
SEGMENTS = {"up": UP_OPS, "down": DOWN_OPS, "normal": NORMAL_OPS}  # controller order: G up, D down, D normal
OPS_PER_MODULE = 6  # section 4.2: 6 operations and 5 adjacency vectors per segment
KEYS = ("generator", "discriminator")  # of the genotype body


# ---------------------------------------------------------------------------- operations

class Op(nn.Module):
    """A normal op at fixed size: pre-activation (BN-ReLU in G, ReLU in D) before convolutions."""

    def __init__(self, name, channels, generator, sn=False):
        super().__init__()
        if name not in NORMAL_OPS + ("conv_5x5", "conv_7x7"):  # the last two: transposed convs kept at size
            raise ValueError(f"unknown AGAN normal operation {name!r}")
        self.name = name
        parts = name.split("_")
        kind = "identity" if name == "identity" else "conv_1xn" if len(parts) == 3 and parts[0] == "conv" \
            else "_".join(parts[:-1])
        k = int(parts[-1].split("x")[0]) if kind != "identity" else 0
        C = channels
        pre = [nn.BatchNorm2d(C), nn.ReLU()] if generator else [nn.ReLU()]
        if name == "identity":
            self.body = nn.Identity()
        elif kind in ("avg_pool", "max_pool"):
            self.body = (nn.AvgPool2d(k, 1, k // 2, count_include_pad=False) if kind == "avg_pool"
                         else nn.MaxPool2d(k, 1, k // 2))
        elif kind == "conv":
            self.body = nn.Sequential(*pre, with_sn(nn.Conv2d(C, C, k, padding=k // 2), sn))
        elif kind == "dil_conv":
            self.body = nn.Sequential(*pre, with_sn(nn.Conv2d(C, C, k, padding=k - 1, dilation=2), sn))
        elif kind == "sep_conv":
            self.body = nn.Sequential(*pre, with_sn(nn.Conv2d(C, C, k, padding=k // 2, groups=C), sn),
                                      with_sn(nn.Conv2d(C, C, 1), sn))
        else:  # 1xn then nx1, nothing between them
            n = int(parts[1][2:])
            self.body = nn.Sequential(*pre, with_sn(nn.Conv2d(C, C, (1, n), padding=(0, n // 2)), sn),
                                      with_sn(nn.Conv2d(C, C, (n, 1), padding=(n // 2, 0)), sn))

    def forward(self, x):
        return self.body(x)


class ResampleOp(nn.Module):
    """An up-sampling op (``UP_OPS``), a down-sampling op (``DOWN_OPS``) or a normal op, applied
    with ``resample`` "up", "down" or None. Without resampling an up/down op is its normal part
    (transposed conv k: conv k); a normal op asked to down-sample pools after itself."""

    def __init__(self, name, channels, generator, resample=None, sn=False):
        super().__init__()
        self.resample, self.pool_first, self.deconv = resample, False, None
        if name.startswith("deconv_"):
            k = int(name.split("_")[1][0])
            if resample == "up":
                pre = [nn.BatchNorm2d(channels), nn.ReLU()] if generator else [nn.ReLU()]
                self.deconv = nn.Sequential(*pre, nn.ConvTranspose2d(channels, channels, k, stride=2,
                                                                     padding=(k - 1) // 2, output_padding=1))
                return
            name = f"conv_{k}x{k}"
        elif name.startswith("nearest_"):
            name = name[len("nearest_"):]
        elif name.endswith("_then_pool"):
            name = name[:-len("_then_pool")]
        elif name.startswith("pool_then_"):
            name, self.pool_first = name[len("pool_then_"):], resample == "down"
        self.op = Op(name, channels, generator, sn)

    def forward(self, x):
        if self.deconv is not None:
            return self.deconv(x)
        if self.resample == "up":
            return self.op(F.interpolate(x, scale_factor=2, mode="nearest"))
        if self.resample == "down":
            return self.op(F.avg_pool2d(x, 2)) if self.pool_first else F.avg_pool2d(self.op(x), 2)
        return self.op(x)


# ---------------------------------------------------------------------------- modules

def module_plan(kind, ops, vectors, prev_resamples):
    """The graph of a module (section 3.2, steps 1-5 and the heuristics) as plain data:
    ``inputs[j]`` the nodes op j sums (op 0 reads h_{i-1}: None), ``resample[j]`` of op j,
    ``low`` the nodes at the input resolution of an up-sampling module, ``leaves`` the nodes
    concatenated. ``kind``: up | down | normal; ``prev_resamples``: the previous module resampled."""
    k = len(ops)
    if len(vectors) != k - 1:
        raise ValueError(f"a module of {k} operations takes {k - 1} adjacency vectors, got {len(vectors)}")
    inputs, resample, used = [None], ["up" if kind == "up" and prev_resamples else
                                      "down" if kind != "up" and prev_resamples else None], set()
    low = {0, 1} if kind == "up" else set()
    for j in range(1, k):
        vector = [int(b) for b in vectors[j - 1]]
        available = j + 1  # x_0 .. x_j exist before op j makes x_{j+1}
        if any(b not in (0, 1) for b in vector) or any(vector[available:]):
            raise ValueError(f"adjacency vector {j - 1} {vector}: only bits 0..{available - 1} may be set (0/1)")
        chosen = [i for i, b in enumerate(vector[:available]) if b] or [0]
        inputs.append(chosen)
        used.update(chosen)
        # in an up-sampling module an op applied to x_0 / x_1 (only) up-samples
        resample.append("up" if kind == "up" and all(i in low for i in chosen) else None)
    leaves = [i for i in range(k + 1) if i not in used]
    if kind == "down":  # the ops right before the concatenation (o_1.., making leaves) down-sample
        resample = resample[:1] + [("down" if j + 1 in leaves else r) for j, r in enumerate(resample) if j > 0]
    return {"inputs": inputs, "resample": resample, "low": sorted(low), "leaves": leaves}


class AGANModule(nn.Module):
    """One searched module: ``forward(h, h_prev)`` (see ``module_plan``)."""

    def __init__(self, kind, ops, vectors, channels, generator, prev_resamples, sn=False):
        super().__init__()
        self.kind = kind
        self.plan = module_plan(kind, ops, vectors, prev_resamples)
        resample = self.plan["resample"]
        self.ops = nn.ModuleList(ResampleOp(op, channels, generator, r, sn) for op, r in zip(ops, resample))
        pre = [nn.BatchNorm2d(channels * len(self.plan["leaves"])), nn.ReLU()] if generator else [nn.ReLU()]
        self.final = nn.Sequential(*pre, with_sn(nn.Conv2d(channels * len(self.plan["leaves"]), channels, 1), sn))

    def forward(self, h, h_prev):
        plan, low = self.plan, set(self.plan["low"])
        nodes = [h, self.ops[0](h_prev)]
        for j in range(1, len(self.ops)):
            chosen = plan["inputs"][j]
            if self.kind == "up" and plan["resample"][j] is None:
                parts = [F.interpolate(nodes[i], scale_factor=2, mode="nearest") if i in low else nodes[i]
                         for i in chosen]
            else:
                parts = [nodes[i] for i in chosen]
            nodes.append(self.ops[j](sum(parts[1:], parts[0])))
        leaves = []
        for i in plan["leaves"]:
            x = nodes[i]
            if self.kind == "up" and i in low:
                x = F.interpolate(x, scale_factor=2, mode="nearest")
            elif self.kind == "down" and i in (0, 1):
                x = F.avg_pool2d(x, 2)
            leaves.append(x)
        return self.final(torch.cat(leaves, 1))


def _segment(body, key):
    return body[key]["ops"], body[key]["inputs"]


class AGANGenerator(nn.Module):
    """linear -> 3 up-sampling modules (one searched topology) -> BN, ReLU, conv 3x3, tanh."""

    def __init__(self, body, resolution, channels, latent_dim):
        super().__init__()
        if resolution % 8:
            raise ValueError(f"AGAN's generator doubles 3 times: resolution must be a multiple of 8, got {resolution}")
        self.width, self.channels, self.latent_dim = resolution // 8, channels, latent_dim
        self.l1 = nn.Linear(latent_dim, self.width ** 2 * channels)
        ops, vectors = _segment(body["generator"], "up")
        self.cells = nn.ModuleList(AGANModule("up", ops, vectors, channels, True, prev_resamples=i > 0)
                                   for i in range(3))
        self.to_rgb = nn.Sequential(nn.BatchNorm2d(channels), nn.ReLU(), nn.Conv2d(channels, 3, 3, padding=1),
                                    nn.Tanh())

    def forward(self, z):
        h = h_prev = self.l1(z).view(-1, self.channels, self.width, self.width)
        for module in self.cells:
            h_prev, h = h, module(h, h_prev)
        return self.to_rgb(h)


class AGANDiscriminator(nn.Module):
    """conv 3x3 -> 2 down-sampling modules -> 2 normal modules -> ReLU, global sum pooling, linear."""

    def __init__(self, body, channels, sn=True):
        super().__init__()
        self.stem = with_sn(nn.Conv2d(3, channels, 3, padding=1), sn)
        down, normal = _segment(body["discriminator"], "down"), _segment(body["discriminator"], "normal")
        self.cells = nn.ModuleList([AGANModule("down", *down, channels, False, False, sn),
                                    AGANModule("down", *down, channels, False, True, sn),
                                    AGANModule("normal", *normal, channels, False, True, sn),
                                    AGANModule("normal", *normal, channels, False, False, sn)])
        self.linear = with_sn(nn.Linear(channels, 1), sn)

    def forward(self, x):
        h = h_prev = self.stem(x)
        for module in self.cells:
            h_prev, h = h, module(h, h_prev)
        return self.linear(F.relu(h).sum(dim=(2, 3)))


# ---------------------------------------------------------------------------- genotype

def validate(body, where):
    """The ``agan`` genotype body: {"generator": {"up": S}, "discriminator": {"down": S, "normal": S}}
    with S = {"ops": [names], "inputs": [k - 1 bit lists]}."""
    for part, keys in (("generator", ("up",)), ("discriminator", ("down", "normal"))):
        if not isinstance(body.get(part), dict):
            raise GenotypeError(f"{where}: \"{part}\" must be an object with {', '.join(keys)}")
        for key in keys:
            segment = body[part].get(key)
            if not isinstance(segment, dict) or not isinstance(segment.get("ops"), list) or len(segment["ops"]) < 2:
                raise GenotypeError(f"{where}: {part}.{key} must be {{\"ops\": [2+ operations], \"inputs\": [...]}}")
            bad = [op for op in segment["ops"] if op not in SEGMENTS[key]]
            if bad:
                raise GenotypeError(f"{where}: {part}.{key}: {bad[0]!r} is not an AGAN {key} operation")
            try:
                module_plan(key, segment["ops"], segment.get("inputs"), False)
            except (ValueError, TypeError) as error:
                raise GenotypeError(f"{where}: {part}.{key}: {error}") from None


def genotype_of(arch, resolution, source=None):
    """A controller sample (per segment (op indices, vectors)) as a ConventionalGenotype."""
    segments = {}
    for (name, vocabulary), (ops, vectors) in zip(SEGMENTS.items(), arch):
        segments[name] = {"ops": [vocabulary[i] for i in ops], "inputs": [list(v) for v in vectors]}
    body = {"generator": {"up": segments["up"]},
            "discriminator": {"down": segments["down"], "normal": segments["normal"]}}
    return ConventionalGenotype("agan", resolution, body, source=source).validate()


def build_agan(genotype, resolution, gf_dim, df_dim, latent_dim, d_spectral_norm=True):
    return (AGANGenerator(genotype.body, resolution, gf_dim, latent_dim),
            AGANDiscriminator(genotype.body, df_dim, d_spectral_norm))
