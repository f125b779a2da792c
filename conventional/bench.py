"""Timing of the conventional searches and retraining (``stylenas bench-conventional``).

Per configuration (``tiny``: the CPU test networks at 32 px; ``paper``: the papers' sizes, meant
for a GPU): seconds per step of each part of an alphaGAN iteration (weight, test-weight,
architecture), the (s) and (l) iteration times and 100-iteration search hours they imply beside
the paper's 3 and 22 GPU-hours (Tesla P40, Table 2); seconds per DEGAS search step (one
weight/code step and one alpha step) and the 50-epoch hours beside the paper's 28 (TITAN X);
seconds per retraining G step (n_critic D steps + one G step) for alphaGAN (s) and AutoGAN-A and
the hours of the 50k-step recipe; AutoGAN's seconds per shared D step, candidate reward and
controller step (and the 65-iteration hours beside the paper's 43), AGAN's seconds per child model,
and the candidates (children) per hour that N processes score; DGGAN's seconds per child
iteration and per scored sample at 32 px, the child they make and the GPU-days of 2,000 children
beside the paper's 580. Random images stand in for data,
a random-weight Inception of the real one's size for the reward network.
"""

from __future__ import annotations

from dataclasses import replace

import torch

from ..devices import median_seconds, resolve_device
from ..search.alphagan import PRESETS as ALPHAGAN_PRESETS
from ..search.alphagan import AlphaGANSearcher
from .losses import d_loss, g_loss
from .networks import build_networks
from .searchers.degas import DEGAS_PRESETS, DegasMethod
from .spaces.alphagan_cells import AlphaGANSuperGenerator
from .spaces.discriminators import Discriminator
from .train import PAPER_STEPS, PRESETS as TRAIN_PRESETS

PAPER_GPU_HOURS = {"alphagan_s": 3.0, "alphagan_l": 22.0, "degas_cifar": 28.0}
CIFAR_HALF = 25_000


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

    weight = median_seconds(lambda: searcher.weight_part(data), repeats, device) / preset.T
    test = median_seconds(test_weight, repeats, device) / (2 * preset.R)
    arch = median_seconds(lambda: searcher.arch_part(data, *held["bar"]), repeats, device) / preset.S
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
    seconds = median_seconds(method.step, repeats, device)
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

    seconds = median_seconds(step, repeats, device)
    row = {"config": config, "genotype": genotype, "g_batch": s["g_batch"], "d_batch": s["d_batch"],
           "n_critic": s["n_critic"], "seconds_per_g_step": seconds}
    if config == "paper":
        row["hours_for_50k_steps"] = seconds * PAPER_STEPS[32] / 3600
    return row


def _reward_net(config, device):
    from .rewards import ProxyInception

    # random weights cost what the real ones do; at 299 px (paper) the network is the real one's size
    return ProxyInception(0, size=75 if config == "tiny" else 299).to(device)


def _random_data(n, device=None):
    gen = torch.Generator().manual_seed(0)
    return [torch.randint(0, 256, (3, 32, 32), dtype=torch.uint8, generator=gen) for _ in range(n)]


def autogan_search(config, device, repeats, processes=(1,)):
    """Seconds per shared-GAN D step, per candidate reward (BN recalibration + IS) and per
    controller step at cell 3; candidates per hour with N processes (rewards spread evenly)."""
    from .genotypes import load_genotype
    from .searchers import autogan
    from .spaces.autogan_cells import autogan_code

    preset = autogan.PRESETS[config]
    search = autogan.AutoGANSearch(preset, 32, _random_data(max(2 * preset.d_batch, 16)), 0, device, "is",
                                   _reward_net(config, device), None)
    search.stage = 2
    search._new_controller()
    search.prefixes = [([1, 0, 1, 1, 1, 0, 0, 1, 1], (torch.zeros(preset.hidden), torch.zeros(preset.hidden)))]
    search.shared_steps = preset.n_critic
    d_step = median_seconds(search.train_shared, repeats, device) / preset.n_critic
    code = autogan_code(load_genotype("autogan_a"))
    reward = median_seconds(lambda: search.score([code], 0), repeats, device)
    ctrl = median_seconds(search.controller_step, repeats, device)
    row = {"config": config, "gf": preset.gf_dim, "df": preset.df_dim, "reward_num": preset.reward_num,
           "ctrl_batch": preset.ctrl_batch, "seconds_per_shared_d_step": d_step,
           "seconds_per_candidate_reward": reward, "seconds_per_controller_step": ctrl,
           "candidates_per_hour": {str(n): n * 3600 / reward for n in processes}}
    if config == "paper":
        shared = preset.shared_epochs * 50_000 // preset.d_batch  # CIFAR-10
        rankings = (len(preset.grow_at) + 1) * preset.num_candidates
        seconds = preset.iterations * (shared * d_step + preset.ctrl_steps * ctrl) + rankings * reward
        row.update(search_hours=seconds / 3600, paper_gpu_hours=43.0)  # the paper's 43 hours on CIFAR-10
    return row


def agan_search(config, device, repeats, processes=(1,)):
    """Seconds per child G step (n_critic D steps + one G step), per reward image, per child model
    (``child_steps`` G steps + IS of ``reward_num`` samples); children per hour with N processes."""
    from .rewards import inception_score_of
    from .searchers import agan

    preset = agan.PRESETS[config]
    data = _random_data(max(2 * preset.d_batch, 16))
    genotype = agan.genotype_of(agan.new_controller(preset.hidden)(
        batch=1, generator=torch.Generator().manual_seed(0)).actions[0], 32)
    steps = 3
    short = replace(preset, child_steps=steps)
    g_step = median_seconds(lambda: agan.train_child(genotype, data, short, 0, device, 32), repeats, device) / steps
    G, _ = agan.train_child(genotype, data, replace(preset, child_steps=1), 0, device, 32)
    net, n = _reward_net(config, device), 2 * preset.eval_batch
    per_image = median_seconds(lambda: inception_score_of(G, net, n, preset.latent_dim, 0, 1, preset.eval_batch), repeats,
                       device) / n
    child = preset.child_steps * g_step + preset.reward_num * per_image
    row = {"config": config, "channels": preset.channels, "child_steps": preset.child_steps,
           "reward_num": preset.reward_num, "seconds_per_child_g_step": g_step, "seconds_per_reward_image": per_image,
           "seconds_per_child": child, "children_per_hour": {str(n): n * 3600 / child for n in processes}}
    if config == "paper":
        row["paper_children_per_hour"] = 20_000 / (6 * 24)  # 200 Titan X for 6 days, 20,000 children
    return row


def dggan_search(config, device, repeats, processes=(1,)):
    """Seconds per child training iteration (WGAN-GP D step + G step) of the 32 px ProgGAN base
    (no grown layers: the cheapest 32 px child) and per scored sample; a child of ``child_iters``
    iterations scored on the preset's samples; children per hour with N processes, and the
    GPU-days of the paper's 2,000 CIFAR-10 children beside its 580."""
    from .searchers import dggan, dggan_candidates
    from .spaces import dggan_grown

    preset = dggan.PRESETS[config]
    cfg = dggan.DGGANConfig(**{"final_resolution": 32, "latent_dim": 128, **preset}).resolved()
    body = dggan_grown.base_body(cfg.latent_dim, cfg.channels)
    double = dggan_grown.Action("double")
    body = dggan_grown.apply_action(dggan_grown.apply_action(body, double), double)
    G, D = dggan_grown.build_grown(body)
    data = _random_data(max(2 * cfg.batch, 16))
    iters = 2
    iteration = median_seconds(lambda: dggan_candidates.train_candidate(G, D, data, iters, cfg.batch, cfg.lr, cfg.betas,
                                                                        0, device), repeats, device) / iters
    scorer = dggan_candidates.FIDScorer(_reward_net(config, device), num=2 * 50, batch=50)
    per_sample = median_seconds(lambda: scorer.candidate_stats(G, 0, device), repeats, device) / scorer.num
    samples = dggan.SCORE_SAMPLES[config]
    child = cfg.child_iters * iteration + samples * per_sample
    row = {"config": config, "channels_32px": cfg.channels[2], "batch": cfg.batch, "child_iters": cfg.child_iters,
           "score_samples": samples, "seconds_per_child_iteration": iteration, "seconds_per_scored_sample": per_sample,
           "seconds_per_child": child, "children_per_hour": {str(n): n * 3600 / child for n in processes}}
    if config == "paper":
        row.update(gpu_days_2000_children=2000 * child / 86400, paper_gpu_days=580.0)  # 2k+ CIFAR-10 models
    return row


def run(device="auto", configs=None, repeats=3, threads=1, log=print, processes=(1,)):
    device = resolve_device(device)
    if threads:
        torch.set_num_threads(threads)
    configs = configs.split(",") if configs else (["tiny", "paper"] if device.type == "cuda" else ["tiny"])
    unknown = [c for c in configs if c not in ("tiny", "paper")]
    if unknown:
        raise ValueError(f"--config: expected tiny and/or paper, got {unknown[0]!r}")
    rows = {"alphagan_search": [], "degas_search": [], "retrain": [], "autogan_search": [], "agan_search": [],
            "dggan_search": []}
    for config in configs:
        log(f"alphaGAN search parts ({config}) ...")
        rows["alphagan_search"].append(alphagan_search(config, device, repeats))
        log(f"DEGAS search step ({config}) ...")
        rows["degas_search"].append(degas_search(config, device, repeats))
        for genotype in ("alphagan_s", "autogan_a"):
            log(f"retraining step, {genotype} ({config}) ...")
            rows["retrain"].append(retrain_step(config, genotype, device, repeats))
        log(f"AutoGAN controller step and candidate reward ({config}) ...")
        rows["autogan_search"].append(autogan_search(config, device, repeats, processes))
        log(f"AGAN child model ({config}) ...")
        rows["agan_search"].append(agan_search(config, device, repeats, processes))
        log(f"DGGAN child iteration and scoring ({config}) ...")
        rows["dggan_search"].append(dggan_search(config, device, repeats, processes))
    return {"device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
            "torch": torch.__version__, "threads": torch.get_num_threads(), "repeats": repeats, **rows}
