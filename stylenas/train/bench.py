"""``stylenas bench-train``: seconds per kimg of full StyleGAN2 training steps, ours and NVlabs'.

A step is what both training loops run per batch: Gmain, Dmain every step, path length every 4
steps and R1 every 16 (so ``steps`` a multiple of 16 amortises the lazy regularisers exactly),
each its own Adam update, and the EMA. Ours is ``StyleGAN2Trainer.step``; NVlabs' is its
``training_loop.py`` phases over ``StyleGAN2Loss.accumulate_gradients`` with its ``Generator`` and
``Discriminator`` built from a stylegan2-ada-pytorch checkout (``--nvlabs PATH``; its code is run,
never copied), at the same resolution, channels, batch, mbstd group, gamma and path-length
settings, on the same device, in the same process. NVlabs runs reduced precision on its
``num_fp16_res`` top resolutions on a GPU, as our ``--fp16-res``; on the CPU both run float32.
One warm-up step per side is not timed.
"""

from __future__ import annotations

import copy
import sys
import time
import types
from pathlib import Path

import torch

from ..devices import synchronize
from ..search.genotype import Genotype
from .config import resolve_config
from .distributed import Dist
from .loss import ema_beta, lazy_regularisation, update_ema
from .stylegan2 import StyleGAN2Trainer, build_networks


class BenchError(RuntimeError):
    pass


def time_ours(config, device, steps, reals):
    trainer = StyleGAN2Trainer(*build_networks(Genotype.original(config.resolution), config), config,
                               Dist(device=device))
    trainer.step(reals)  # warm-up (step 0 runs both regularisers)
    synchronize(device)
    start = time.perf_counter()
    for _ in range(steps):
        trainer.step(reals)
    synchronize(device)
    return time.perf_counter() - start


def import_nvlabs(path):
    """stylegan2-ada-pytorch's networks and loss from a checkout (``dnnlib`` imports ``requests`` for
    downloads only; where it is not installed an empty module stands in)."""
    if not (Path(path) / "training" / "networks.py").is_file():
        raise BenchError(f"--nvlabs {path}: not a stylegan2-ada-pytorch checkout (no training/networks.py)")
    sys.modules.setdefault("requests", types.ModuleType("requests"))
    sys.path.insert(0, str(path))
    try:
        from training import loss as nv_loss
        from training import networks as nv_networks
    except ImportError as error:
        raise BenchError(f"--nvlabs {path}: cannot import stylegan2-ada-pytorch's training.networks and "
                         f"training.loss ({error})") from None
    finally:
        sys.path.remove(str(path))
    return nv_networks, nv_loss


def time_nvlabs(path, config, device, steps, reals):
    nv_networks, nv_loss = import_nvlabs(path)
    fp16 = config.fp16_res if device.type == "cuda" else 0
    common = dict(channel_base=config.channel_base, channel_max=config.channel_max, num_fp16_res=fp16,
                  conv_clamp=config.conv_clamp)
    G = nv_networks.Generator(z_dim=config.z_dim, c_dim=0, w_dim=config.w_dim, img_resolution=config.resolution,
                              img_channels=3, mapping_kwargs={"num_layers": 8}, synthesis_kwargs=common)
    D = nv_networks.Discriminator(c_dim=0, img_resolution=config.resolution, img_channels=3,
                                  epilogue_kwargs={"mbstd_group_size": config.mbstd_group}, **common)
    G, D = G.to(device).train().requires_grad_(False), D.to(device).train().requires_grad_(False)
    G_ema = copy.deepcopy(G).eval()
    loss = nv_loss.StyleGAN2Loss(device, G.mapping, G.synthesis, D, style_mixing_prob=config.mixing,
                                 r1_gamma=config.gamma, pl_batch_shrink=config.pl_batch_shrink,
                                 pl_decay=config.pl_decay, pl_weight=config.pl_weight)
    phases = []
    for name, module, interval in (("G", G, config.g_reg_interval), ("D", D, config.d_reg_interval)):
        lr, betas = lazy_regularisation(config.lr, config.adam_betas, interval)
        opt = torch.optim.Adam(module.parameters(), lr=lr, betas=betas, eps=config.adam_eps)
        phases += [(name + "main", module, opt, 1), (name + "reg", module, opt, interval)]
    c = torch.zeros([len(reals), 0], device=device)
    nimg = 0

    def step(index):
        nonlocal nimg
        for name, module, opt, interval in phases:
            if index % interval:
                continue
            module.requires_grad_(True)
            opt.zero_grad(set_to_none=True)
            z = torch.randn([len(reals), config.z_dim], device=device)
            loss.accumulate_gradients(phase=name, real_img=reals, real_c=c, gen_z=z, gen_c=c, sync=True,
                                      gain=interval)
            module.requires_grad_(False)
            for p in module.parameters():
                if p.grad is not None:
                    torch.nan_to_num(p.grad, nan=0, posinf=1e5, neginf=-1e5, out=p.grad)
            opt.step()
        update_ema(G_ema, G, ema_beta(len(reals), config.ema_kimg, config.ema_rampup, nimg))
        nimg += len(reals)

    step(0)
    synchronize(device)
    start = time.perf_counter()
    for index in range(1, steps + 1):
        step(index)
    synchronize(device)
    return time.perf_counter() - start


def run(device, resolution=None, cfg=None, batch=None, steps=16, nvlabs=None, precision=None, log=print):
    gpu = device.type == "cuda"
    resolution = resolution or (256 if gpu else 16)
    cfg = cfg or ("paper256" if gpu else "tiny")
    if steps < 1:
        raise BenchError(f"--steps must be at least 1, got {steps}")
    # no augmentation: NVlabs' side times StyleGAN2Loss without an augment pipe
    config = resolve_config(cfg, resolution, batch=batch, fp16_res=None if gpu else 0, precision=precision,
                            aug="noaug")
    torch.manual_seed(0)
    reals = torch.rand([config.batch, 3, resolution, resolution], device=device) * 2 - 1
    kimg = steps * config.batch / 1000
    result = {"device": torch.cuda.get_device_name(device) if gpu else "cpu", "torch": torch.__version__,
              "threads": torch.get_num_threads(), "cfg": cfg, "resolution": resolution, "batch": config.batch,
              "channel_base": config.channel_base, "channel_max": config.channel_max, "steps": steps,
              "fp16_res": config.fp16_res, "precision": {"ours": config.precision, "nvlabs": "fp16"} if gpu
              else "float32 on both sides"}
    log(f"ours: {steps} steps of batch {config.batch} at {resolution} px ({cfg})")
    ours = time_ours(config, device, steps, reals)
    result["ours_s_per_kimg"] = ours / kimg
    if nvlabs:
        log(f"NVlabs stylegan2-ada-pytorch ({nvlabs}): the same")
        theirs = time_nvlabs(nvlabs, config, device, steps, reals)
        result["nvlabs_s_per_kimg"] = theirs / kimg
        result["speedup_vs_nvlabs"] = theirs / ours
    return result
