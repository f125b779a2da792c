"""Seconds per alphaGAN search iteration on synthetic data, for every paradigm, beside the
time of the same number of plain (discrete StyleGAN2) adversarial steps as the reference."""

from __future__ import annotations

import time

import torch

from ..devices import resolve_device, synchronize
from ..nn.networks import Discriminator
from .genotype import Genotype
from .alphagan import PRESETS, AdversarialLoss, AlphaGANSearcher
from .run import network_settings
from .supernet import SuperGenerator

PARADIGMS = [("micro", False), ("micro", True), ("macro", False), ("macro", True)]


def _random_batches(batch, resolution, device):
    while True:
        yield torch.rand(batch, 3, resolution, resolution, device=device) * 2 - 1


def time_search(preset_name, resolution, space, dynamic_w, device, iterations=2):
    preset = PRESETS[preset_name]
    network, channels = network_settings(preset_name, preset.channel_mult)
    torch.manual_seed(0)
    G = SuperGenerator(resolution, z_dim=network["z_dim"], w_dim=network["w_dim"], space=space,
                       dynamic_w=dynamic_w, **channels).to(device)
    D = Discriminator(resolution, **channels).to(device)
    searcher = AlphaGANSearcher(G, D, lambda n: torch.randn(n, network["z_dim"], device=device), preset)
    data = _random_batches(preset.batch, resolution, device)
    searcher.iteration(data, data)  # warm-up
    synchronize(device)
    start = time.perf_counter()
    for _ in range(iterations):
        searcher.iteration(data, data)
    synchronize(device)
    return (time.perf_counter() - start) / iterations


def time_plain_steps(preset_name, resolution, device, steps):
    """`steps` D+G steps of the discrete original StyleGAN2 at the search's size."""
    preset = PRESETS[preset_name]
    network, channels = network_settings(preset_name, preset.channel_mult)
    G = Genotype.original(resolution, channels).build_generator(network["z_dim"], network["w_dim"]).to(device)
    D = Discriminator(resolution, **channels).to(device)
    g_opt, d_opt = torch.optim.Adam(G.parameters()), torch.optim.Adam(D.parameters())
    adv, data = AdversarialLoss(preset.loss), _random_batches(preset.batch, resolution, device)

    def step():
        z = torch.randn(preset.batch, network["z_dim"], device=device)
        d_opt.zero_grad()
        adv.d_loss(D(next(data)), D(G(z).detach())).backward()
        d_opt.step()
        g_opt.zero_grad()
        adv.g_loss(D(G(z))).backward()
        g_opt.step()

    step()
    synchronize(device)
    start = time.perf_counter()
    for _ in range(steps):
        step()
    synchronize(device)
    return time.perf_counter() - start


def run(preset_name, resolution, device, iterations=2):
    device = resolve_device(device)
    preset = PRESETS[preset_name]
    # one iteration = T weight steps + 2R test-weight steps + S architecture steps
    steps = preset.T + 2 * preset.R + preset.S
    plain = time_plain_steps(preset_name, resolution, device, steps)
    rows = []
    for space, dynamic_w in PARADIGMS:
        seconds = time_search(preset_name, resolution, space, dynamic_w, device, iterations)
        rows.append({"paradigm": space + ("+dynamic_w" if dynamic_w else ""), "seconds_per_iteration": seconds,
                     "ratio_to_plain_steps": seconds / plain,
                     "hours_for_preset": seconds * preset.iterations / 3600})
    return {"device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
            "torch": torch.__version__, "preset": preset_name, "resolution": resolution,
            "steps_per_iteration": steps, "plain_stylegan2_seconds_for_same_steps": plain, "results": rows}
