"""DEGAS (Doveh and Giryes, "DEGAS: Differentiable Efficient Generator Search", section 3.2).

The whole generator is searched, without cells: a fixed head (linear + reshape to
[C, w, w]), a searched body of feature maps joined by MixedOps, and a fixed tail (BN, ReLU,
conv 3x3, tanh). Our reading of the paper's Fig. 2 (the figure is the only description):

- three stages double the size; stage k holds one up-sampled map ``up{k}`` and
  ``normal_per_stage`` normal maps ``n{k}_1, n{k}_2, ...``;
- ``up{k}`` has a direct up edge from the map before it (the head, or the last normal map of
  stage k-1) and residual up edges from the earlier up-sampled maps ``up{j}`` (x 2^(k-j));
- ``n{k}_i`` has a direct normal edge from the map before it and residual normal edges from
  the earlier maps of its stage;
- every edge is a MixedOp over the normal ops (bn+relu+conv 1x1/3x3, max/avg pool, skip, sep
  conv 3/5, dilated conv 3/5) or the up ops (bn+relu+deconv k4/k6, bn+relu+nearest+conv 1/3).

The search (``conventional.searchers.degas``) trains ``DegasSuperGenerator``, every edge a
MixedOp with its alphas. Pruning (two stages, on the raw alphas as the paper says: "the operation with
the largest value of alpha"): each map keeps the incoming edge holding the largest alpha; when that
edge is residual it also keeps its direct edge with the largest alpha. The op of a kept edge is the
edge's argmax.

Genotype body (search space ``degas``): ``normal_per_stage`` and ``nodes``, the feature maps in
forward order, each ``{"name", "kind", "inputs": [{"from", "op", "residual"}]}`` listing its kept
incoming edges; ``DegasGenerator`` is its discrete network.
"""

from __future__ import annotations

import torch
from torch import nn

from ...search.genotype import GenotypeError
from ...search.supernet import ArchitectureSplit
from ..genotypes import ConventionalGenotype
from ..ops import DEGAS_NORMAL_OPS, DEGAS_UP_OPS, degas_op
from .cells import bottom_width

NUM_STAGES = 3
ARCH_INIT_SCALE = 1e-3
KEYS = ("nodes", "normal_per_stage")  # of the genotype body


# ---------------------------------------------------------------------------- layout

def layout(normal_per_stage=2):
    """[(map name, kind, [(source, residual, scale)])] in forward order; kind "up" or "normal"."""
    maps, previous, ups = [], "head", []
    for k in range(1, NUM_STAGES + 1):
        name = f"up{k}"
        maps.append((name, "up", [(previous, False, 2)] + [(u, True, 2 ** (k - j)) for j, u in enumerate(ups, 1)]))
        ups.append(name)
        stage = [name]
        for i in range(1, normal_per_stage + 1):
            name = f"n{k}_{i}"
            maps.append((name, "normal", [(stage[-1], False, 1)] + [(s, True, 1) for s in stage[:-1]]))
            stage.append(name)
        previous = stage[-1]
    return maps


def edge_key(target, source):
    return f"{target}__{source}"


def validate(body, where="genotype"):
    per_stage = body.get("normal_per_stage")
    if not (isinstance(per_stage, int) and not isinstance(per_stage, bool) and per_stage >= 1):
        raise GenotypeError(f"{where}: normal_per_stage must be a positive integer, got {per_stage!r}")
    nodes = body.get("nodes")
    expected = layout(per_stage)
    if not isinstance(nodes, list) or len(nodes) != len(expected):
        raise GenotypeError(f"{where}: \"nodes\" must list {len(expected)} feature maps "
                            f"({', '.join(n for n, _, _ in expected)})")
    for node, (name, kind, edges) in zip(nodes, expected):
        if not isinstance(node, dict) or node.get("name") != name:
            raise GenotypeError(f"{where}: expected feature map {name!r} here, got {node!r}")
        inputs = node.get("inputs")
        valid_ops = DEGAS_UP_OPS if kind == "up" else DEGAS_NORMAL_OPS
        sources = {source: residual for source, residual, _ in edges}
        if not isinstance(inputs, list) or not inputs:
            raise GenotypeError(f"{where}: {name}: \"inputs\" must be a non-empty list")
        for item in inputs:
            if not isinstance(item, dict) or item.get("from") not in sources:
                raise GenotypeError(f"{where}: {name}: inputs come from {', '.join(sources)}; got {item!r}")
            if item.get("op") not in valid_ops:
                raise GenotypeError(f"{where}: {name} is a{'n up' if kind == 'up' else ' normal'} map: op must be "
                                    f"one of {', '.join(valid_ops)}, got {item.get('op')!r}")
        if all(sources[item["from"]] for item in inputs):
            raise GenotypeError(f"{where}: {name}: only residual inputs; a direct input is required")


# ---------------------------------------------------------------------------- networks

class DegasBody(nn.Module):
    """Head, feature maps, tail. ``edges[target]`` maps a source to a module taking
    ``(x)`` (discrete) or ``(x, weights)`` (MixedOp)."""

    def __init__(self, resolution, gf_dim, latent_dim, normal_per_stage):
        super().__init__()
        self.resolution, self.gf_dim, self.latent_dim = resolution, gf_dim, latent_dim
        self.width = bottom_width(resolution)
        self.normal_per_stage = normal_per_stage
        self.layout = layout(normal_per_stage)
        self.l1 = nn.Linear(latent_dim, self.width ** 2 * gf_dim)
        self.to_rgb = nn.Sequential(nn.BatchNorm2d(gf_dim), nn.ReLU(), nn.Conv2d(gf_dim, 3, 3, padding=1), nn.Tanh())

    def run(self, z, edge_out):
        maps = {"head": self.l1(z).view(-1, self.gf_dim, self.width, self.width)}
        for name, _, edges in self.layout:
            out = 0
            for source, _, _ in edges:
                value = edge_out(name, source, maps[source])
                if value is not None:
                    out = out + value
            maps[name] = out
        return self.to_rgb(maps[self.layout[-1][0]])


class MixedOp(nn.Module):
    def __init__(self, ops, channels, scale):
        super().__init__()
        self.ops = nn.ModuleDict({op: degas_op(op, channels, scale) for op in ops})

    def forward(self, x, weights):
        out = 0
        for w, op in zip(weights, self.ops.values()):
            out = out + w * op(x)
        return out


class DegasSuperGenerator(ArchitectureSplit, DegasBody):
    def __init__(self, resolution=32, gf_dim=256, latent_dim=128, normal_per_stage=2):
        super().__init__(resolution, gf_dim, latent_dim, normal_per_stage)
        self.edges = nn.ModuleDict()
        self.arch = nn.ParameterDict()
        for name, kind, edges in self.layout:
            ops = DEGAS_UP_OPS if kind == "up" else DEGAS_NORMAL_OPS
            for source, _, scale in edges:
                self.edges[edge_key(name, source)] = MixedOp(ops, gf_dim, scale)
                self.arch[edge_key(name, source)] = nn.Parameter(ARCH_INIT_SCALE * torch.randn(len(ops)))

    def forward(self, z, kept=None):
        """``kept`` (a set of edge keys, e.g. of a pruned genotype) leaves the other edges out."""
        def edge_out(name, source, x):
            key = edge_key(name, source)
            if kept is not None and key not in kept:
                return None
            return self.edges[key](x, torch.softmax(self.arch[key], dim=0))

        return self.run(z, edge_out)

    def op_weights(self):
        return {key: torch.softmax(value.detach().float().cpu(), dim=0).tolist() for key, value in self.arch.items()}

    def genotype(self, resolution=None, source=None):
        nodes = prune(self.layout, {key: value.detach().float().cpu() for key, value in self.arch.items()})
        arch = {key: value.detach().cpu().tolist() for key, value in self.arch.items()}
        return ConventionalGenotype("degas", resolution or self.resolution,
                                    {"nodes": nodes, "normal_per_stage": self.normal_per_stage}, arch,
                                    source).validate()

    def discrete_state_dict(self, genotype):
        """Weights of ``DegasGenerator(genotype)`` taken from the supernet (kept edges, chosen ops)."""
        kept = kept_edges(genotype)
        state = {}
        for key, value in self.state_dict().items():
            if key.startswith("arch."):
                continue
            if key.startswith("edges."):
                _, edge, _, op, rest = key.split(".", 4)
                if kept.get(edge) != op:
                    continue
                key = f"edges.{edge}.{rest}"
            state[key] = value
        return state


def kept_edges(genotype):
    """{edge key: op} of the edges a DEGAS genotype keeps."""
    return {edge_key(node["name"], item["from"]): item["op"] for node in genotype.body["nodes"]
            for item in node["inputs"]}


def prune(maps, weights):
    """The paper's two-stage pruning (section 3.2, "Pruning phase"). ``weights[edge key]``: the raw
    alphas of the edge's ops (the paper compares "the largest value of alpha"; a softmax per edge would
    rank edges otherwise). Stage 1 keeps, per map, the incoming edge holding the largest alpha; stage
    2 adds the strongest direct edge when the stage-1 edge is residual."""
    nodes = []
    for name, kind, edges in maps:
        ops = DEGAS_UP_OPS if kind == "up" else DEGAS_NORMAL_OPS

        def strength(edge):
            return float(weights[edge_key(name, edge[0])].max())

        best = max(edges, key=strength)
        kept = [best]
        if best[1]:
            kept.append(max((e for e in edges if not e[1]), key=strength))
        inputs = [{"from": source, "op": ops[int(weights[edge_key(name, source)].argmax())], "residual": residual}
                  for source, residual, _ in sorted(kept, key=edges.index)]
        nodes.append({"name": name, "kind": kind, "inputs": inputs})
    return nodes


class DegasGenerator(DegasBody):
    """The discrete generator of a DEGAS genotype."""

    def __init__(self, genotype, resolution=32, gf_dim=256, latent_dim=128):
        super().__init__(resolution, gf_dim, latent_dim, genotype.body["normal_per_stage"])
        scales = {(name, source): scale for name, _, edges in self.layout for source, _, scale in edges}
        self.edges = nn.ModuleDict()
        for node in genotype.body["nodes"]:
            for item in node["inputs"]:
                key = edge_key(node["name"], item["from"])
                self.edges[key] = degas_op(item["op"], gf_dim, scales[(node["name"], item["from"])])

    def forward(self, z):
        def edge_out(name, source, x):
            key = edge_key(name, source)
            return self.edges[key](x) if key in self.edges else None

        return self.run(z, edge_out)
