"""Random search in a searcher's own space, at the searcher's budget (Li and Talwalkar 2019).

``random_search(sample, evaluate, budget_kimg, seed, folder)``: draw an architecture uniformly with a
``numpy.random.Generator`` seeded by ``seed``, train it briefly with the shared recipe and score it
(``evaluate(genotype, candidate_folder) -> (score, kimg spent)``; lower is better), keep the best, and
stop before the next candidate would pass the budget (the first candidate always runs). Every
candidate is one line of ``folder/candidates.jsonl``; a resumed search reads that file and continues
with the next draw, so a killed random search redoes at most the candidate it was in.

Samplers of the spaces, each uniform over the space as the searcher defines it:
- ``sample_stylegan2(rng, resolution, paradigm, channels)``: the StyleGAN2 micro / macro spaces, with or
  without dynamic W (one W_1..W_8 per latent slot of StyleGAN2's tied layout).
- ``sample_autogan(rng, resolution)``: AutoGAN's 14-integer code, each decision uniform over its
  options (``STAGE_CHOICES``: 373,248 architectures).
- ``sample_alphagan_cells(rng, resolution)``: alphaGAN's cell space, every edge's operation uniform
  (6 normal ops on 9 edges, 3 up ops on 6 up and 3 skip edges).
- ``sample_degas(rng, resolution, normal_per_stage=2)``: uniform over the DAGs DEGAS's pruning can
  derive: per feature map, either its direct edge alone or one residual edge plus the direct edge,
  with an operation per kept edge (each such choice weighted by the number of op assignments).
- ``sample_agan(rng, resolution)``: AGAN's controller space, each of the 6 operations of a segment
  uniform over its vocabulary and every bit of the 5 adjacency vectors a fair coin.
- ``sample_dggan(rng, resolution, preset)``: DGGAN's growth: from the 8 px ProgGAN base, actions drawn
  uniformly among the allowed ones (grow G, grow D, double) until none is allowed, the search's own
  stopping rule (a random growth path, not uniform over the reachable networks).
"""
import json
from pathlib import Path

import numpy as np

from ..nn.layers import NORMAL_OPS, UP_OPS
from ..nn.networks import NUM_WS, synthesis_layout, w_slots
from ..search.genotype import Genotype

CANDIDATES = "candidates.jsonl"


def sample_stylegan2(rng, resolution, paradigm, channels):
    """A uniformly drawn StyleGAN2 genotype of `paradigm` (micro / macro, + dynamic_w or not)."""
    space, _, dynamic = paradigm.partition("+")
    layout = synthesis_layout(resolution)
    ops = {"normal": NORMAL_OPS, "up": UP_OPS}
    shared = {kind: choices[rng.integers(len(choices))] for kind, choices in ops.items()}  # micro
    slots = w_slots(resolution, "tied")
    slot_w = [int(rng.integers(1, NUM_WS + 1)) if dynamic else NUM_WS for _ in range(max(slots) + 1)]
    layers = []
    for (name, kind), slot in zip(layout, slots):
        layer = {"name": name}
        if kind != "torgb":
            layer["op"] = shared[kind] if space == "micro" else ops[kind][rng.integers(len(ops[kind]))]
        layer["w"] = slot_w[slot]
        layers.append(layer)
    return Genotype(resolution, layers, paradigm, channels=dict(channels), torgb_w="tied")


def sample_autogan(rng, resolution):
    from ..conventional.spaces.autogan_cells import STAGE_CHOICES, autogan_from_code

    code = [int(rng.integers(n)) for stage in STAGE_CHOICES for n in stage]
    return autogan_from_code(code, resolution=resolution, source={"random_code": code})


def sample_alphagan_cells(rng, resolution):
    from ..conventional import ConventionalGenotype
    from ..conventional.ops import ALPHAGAN_NORMAL_OPS, ALPHAGAN_UP_OPS
    from ..conventional.spaces.cells import NUM_CELLS

    def draw(ops, count):
        return [ops[int(rng.integers(len(ops)))] for _ in range(count)]

    cells = [{"up": draw(ALPHAGAN_UP_OPS, 2), "normal": draw(ALPHAGAN_NORMAL_OPS, 3), "skip": draw(ALPHAGAN_UP_OPS, c)}
             for c in range(NUM_CELLS)]
    return ConventionalGenotype("alphagan_conv", resolution, {"cells": cells}, source={"random": True})


def sample_degas(rng, resolution, normal_per_stage=2):
    from ..conventional import ConventionalGenotype
    from ..conventional.ops import DEGAS_NORMAL_OPS, DEGAS_UP_OPS
    from ..conventional.spaces.degas_dag import layout

    nodes = []
    for name, kind, edges in layout(normal_per_stage):
        ops = DEGAS_UP_OPS if kind == "up" else DEGAS_NORMAL_OPS
        residual = [source for source, is_residual, _ in edges if is_residual]
        direct = next(source for source, is_residual, _ in edges if not is_residual)
        # direct alone: len(ops) architectures; each residual + direct: len(ops) ** 2
        weights = np.array([1.0] + [len(ops)] * len(residual))
        pick = int(rng.choice(len(weights), p=weights / weights.sum()))
        inputs = [] if pick == 0 else [{"from": residual[pick - 1], "op": ops[int(rng.integers(len(ops)))],
                                        "residual": True}]
        inputs.insert(0, {"from": direct, "op": ops[int(rng.integers(len(ops)))], "residual": False})
        nodes.append({"name": name, "kind": kind, "inputs": inputs})
    body = {"nodes": nodes, "normal_per_stage": normal_per_stage}
    return ConventionalGenotype("degas", resolution, body, source={"random": True}).validate()


def sample_agan(rng, resolution):
    from ..conventional.spaces.agan_modules import OPS_PER_MODULE, SEGMENTS, genotype_of

    arch = [([int(rng.integers(len(vocabulary))) for _ in range(OPS_PER_MODULE)],
             [[int(b) for b in rng.integers(0, 2, i + 2)] for i in range(OPS_PER_MODULE - 1)])
            for vocabulary in SEGMENTS.values()]
    return genotype_of(arch, resolution, source={"random": True})


def sample_dggan(rng, resolution, preset="paper"):
    from ..conventional import ConventionalGenotype
    from ..conventional.searchers.dggan import PRESETS, DGGANConfig
    from ..conventional.spaces.dggan_grown import action_space, allowed, apply_action, base_body

    settings = {"latent_dim": 128 if resolution == 32 else 512, **PRESETS[preset]}
    names = {f.name for f in __import__("dataclasses").fields(DGGANConfig)}
    config = DGGANConfig(final_resolution=resolution, **{k: v for k, v in settings.items() if k in names}).resolved()
    body = base_body(config.latent_dim, config.channels)
    actions = action_space(config.kernels, config.filters)
    while True:
        possible = [a for a in actions if allowed(body, a, resolution, config.max_grown)]
        if not possible:
            break
        body = apply_action(body, possible[int(rng.integers(len(possible)))])
    return ConventionalGenotype("dggan", resolution, body, source={"random": True}).validate()


def _read_candidates(path):
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def random_search(sample, evaluate, budget_kimg, seed, folder, log=lambda line: None):
    """Run (or continue) a random search; returns {"best": record, "candidates": [records], "kimg"}.

    `sample(rng) -> genotype` (with ``.save(path)``); `evaluate(genotype, folder) -> (score, kimg)`."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    done = _read_candidates(folder / CANDIDATES)
    spent, per_candidate = sum(c["kimg"] for c in done), None
    index = 0
    while True:
        genotype = sample(rng)  # drawn even when already evaluated, so the stream continues where it was
        if index < len(done):
            index += 1
            continue
        if done:
            per_candidate = done[-1]["kimg"]
            if spent + per_candidate > budget_kimg + 1e-9:
                break
        cand_dir = folder / f"candidate{index:03d}"
        genotype.save(cand_dir / "genotype.json")
        score, kimg = evaluate(genotype, cand_dir)
        record = {"index": index, "score": float(score), "kimg": float(kimg),
                  "genotype": str(cand_dir / "genotype.json")}
        with open(folder / CANDIDATES, "a") as file:
            file.write(json.dumps(record) + "\n")
        done.append(record)
        spent += kimg
        log(f"random candidate {index}: score {score:.4g}, {spent:.3g}/{budget_kimg:.3g} kimg")
        index += 1
    best = min(done, key=lambda c: c["score"])
    return {"best": best, "candidates": done, "kimg": spent}
