"""Timing of the conventional searches and retraining (``stylenas bench-conventional``).

Per configuration (``tiny``: the CPU test networks at 32 px; ``paper``: the papers' sizes, meant
for a GPU): seconds per step of each part of an alphaGAN iteration (weight, test-weight,
architecture), the (s) and (l) iteration times and 100-iteration search hours they imply beside
the paper's 3 and 22 GPU-hours (Tesla P40, Table 2); seconds per DEGAS search step (one
weight/code step and one alpha step) and the 50-epoch hours beside the paper's 28 (TITAN X);
seconds per retraining G step (n_critic D steps + one G step) for alphaGAN (s) and AutoGAN-A and
the hours of the 50k-step recipe. Random images stand in for data.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import replace

import torch

from ..devices import resolve_device
from ..search.alphagan import PRESETS as ALPHAGAN_PRESETS
from ..search.alphagan import AlphaGANSearcher
from .alphagan_space import AlphaGANSuperGenerator
from .losses import d_loss, g_loss
from .networks import Discriminator, build_networks
from .search import DEGAS_PRESETS, DegasMethod
from .train import PAPER_STEPS, PRESETS as TRAIN_PRESETS

PAPER_GPU_HOURS = {"alphagan_s": 3.0, "alphagan_l": 22.0, "degas_cifar": 28.0}
CIFAR_HALF = 25_000


def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _timed(fn, repeats, device):
    fn()  # warm-up (cuDNN autotuning, allocator)
    times = []
    for _ in range(repeats):
        _sync(device)
        start = time.perf_counter()
        fn()
        _sync(device)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def _images(batch, device):
    while True:
        yield torch.rand(batch, 3, 32, 32, device=device) * 2 - 1


def alphagan_search(config, device, repeats):
    net = {"tiny": (8, 8, 16), "paper": (256, 128, 128)}[config]
    preset = ALPHAGAN_PRESETS["tiny" if config == "tiny" else "s"]
    torch.manual_seed(0)
    G = AlphaGANSuperGenerator(32, net[0], net[2]).to(device)
    D = Discriminator(net[1]).to(device)
    searcher = AlphaGANSearcher(G, D, lambda n: torch.randn(n, net[2], device=device), preset)
    data = _images(preset.batch, device)
    held = {}

    def test_weight():
        held["bar"] = searcher.test_weight_part(data)

    weight = _timed(lambda: searcher.weight_part(data), repeats, device) / preset.T
    test = _timed(test_weight, repeats, device) / (2 * preset.R)
    arch = _timed(lambda: searcher.arch_part(data, *held["bar"]), repeats, device) / preset.S
    row = {"config": config, "batch": preset.batch, "gf": net[0], "df": net[1],
           "seconds_per_weight_step": weight, "seconds_per_test_weight_step": test, "seconds_per_arch_step": arch}
    if config == "paper":
        for name, T, R, S in (("s", 20, 20, 20), ("l", CIFAR_HALF // 64, CIFAR_HALF // 64, 20)):
            seconds = T * weight + 2 * R * test + S * arch
            row[f"seconds_per_iteration_{name}"] = seconds
            row[f"search_hours_{name}"] = seconds * 100 / 3600
            row[f"paper_gpu_hours_{name}"] = PAPER_GPU_HOURS[f"alphagan_{name}"]
    return row


def degas_search(config, device, repeats):
    preset = DEGAS_PRESETS["tiny" if config == "tiny" else "cifar"]
    preset = replace(preset, steps_per_epoch=1)
    n = max(2 * preset.batch, 16)
    dataset = [torch.randint(0, 256, (3, 32, 32), dtype=torch.uint8) for _ in range(n)]
    halves = (torch.arange(n // 2), torch.arange(n // 2, n))
    method = DegasMethod(preset, 32, halves, dataset, 0, device)
    seconds = _timed(method.step, repeats, device)
    row = {"config": config, "batch": preset.batch, "gf": preset.gf_dim, "seconds_per_step": seconds}
    if config == "paper":
        row["search_hours_50_epochs"] = seconds * (CIFAR_HALF // preset.batch) * preset.epochs / 3600
        row["paper_gpu_hours"] = PAPER_GPU_HOURS["degas_cifar"]
    return row


def retrain_step(config, genotype, device, repeats):
    s = TRAIN_PRESETS[config]
    torch.manual_seed(0)
    G, D = build_networks(genotype, 32, s["gf_dim"], s["df_dim"], s["latent_dim"])
    G, D = G.to(device), D.to(device)
    g_opt = torch.optim.Adam(G.parameters(), 2e-4, betas=(0.0, 0.9))
    d_opt = torch.optim.Adam(D.parameters(), 2e-4, betas=(0.0, 0.9))
    data = _images(s["d_batch"], device)

    def step():
        for _ in range(s["n_critic"]):
            with torch.no_grad():
                fake = G(torch.randn(s["d_batch"], s["latent_dim"], device=device))
            loss, _ = d_loss("hinge", D, next(data), fake)
            d_opt.zero_grad(set_to_none=True)
            loss.backward()
            d_opt.step()
        D.requires_grad_(False)
        loss = g_loss(D, G(torch.randn(s["g_batch"], s["latent_dim"], device=device)))
        g_opt.zero_grad(set_to_none=True)
        loss.backward()
        g_opt.step()
        D.requires_grad_(True)

    seconds = _timed(step, repeats, device)
    row = {"config": config, "genotype": genotype, "g_batch": s["g_batch"], "d_batch": s["d_batch"],
           "n_critic": s["n_critic"], "seconds_per_g_step": seconds}
    if config == "paper":
        row["hours_for_50k_steps"] = seconds * PAPER_STEPS[32] / 3600
    return row


def run(device="auto", configs=None, repeats=3, threads=1, log=print):
    device = resolve_device(device)
    if threads:
        torch.set_num_threads(threads)
    configs = configs.split(",") if configs else (["tiny", "paper"] if device.type == "cuda" else ["tiny"])
    unknown = [c for c in configs if c not in ("tiny", "paper")]
    if unknown:
        raise ValueError(f"--config: expected tiny and/or paper, got {unknown[0]!r}")
    rows = {"alphagan_search": [], "degas_search": [], "retrain": []}
    for config in configs:
        log(f"alphaGAN search parts ({config}) ...")
        rows["alphagan_search"].append(alphagan_search(config, device, repeats))
        log(f"DEGAS search step ({config}) ...")
        rows["degas_search"].append(degas_search(config, device, repeats))
        for genotype in ("alphagan_s", "autogan_a"):
            log(f"retraining step, {genotype} ({config}) ...")
            rows["retrain"].append(retrain_step(config, genotype, device, repeats))
    return {"device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
            "torch": torch.__version__, "threads": torch.get_num_threads(), "repeats": repeats, **rows}
