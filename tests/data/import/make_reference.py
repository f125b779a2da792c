"""Makes the reference files of tests/test_import.py with the ORIGINAL code bases (run once; the
outputs are committed, the checkouts never are).

    git clone https://github.com/NVlabs/stylegan2-ada-pytorch  /tmp/nvlabs     # tested at d72cc7d
    git clone https://github.com/rosinality/stylegan2-pytorch /tmp/rosinality  # tested at bef283a
    pip install --target /tmp/pydeps requests                                  # NVlabs' dnnlib imports it
    PYTHONPATH=/tmp/pydeps python tests/data/import/make_reference.py --nvlabs /tmp/nvlabs --rosinality /tmp/rosinality

Writes into this folder (CPU, float32, deterministic):
  network-snapshot-tiny.pkl   a 16 px NVlabs G / D / G_ema / augment_pipe snapshot, pickled exactly as
                              training/training_loop.py does (deep copies in eval mode, pickle.dump)
                              with train.py's kwargs (EasyDicts, num_fp16_res 4, conv_clamp 256)
  network-conditional.pkl     the same with c_dim 2 (G_ema only): the importer must refuse it
  network-variant.pkl         an 8 px G_ema with mapping lr_multiplier 0.1, use_noise False, no conv_clamp,
  nvlabs_variant_reference.npz  and its images (psi 0.5)
  network-map2.pkl            an 8 px G / D / G_ema snapshot with a 2-layer mapping network (--cfg auto, cifar)
  nvlabs_map2_reference.npz   its latents, images (psi 1, psi 0.7, style mixing), G images, D logits
  nvlabs_reference.npz        latents and the original code's images (noise_mode const, float32 via
                              force_fp32, as our import computes): psi 1, psi 0.7, style mixing, G, D logits
  tiny.pt                     a 16 px rosinality checkpoint, keys and args as its train.py saves them
  rosinality_reference.npz    latents, explicit noise inputs and the original code's images (explicit
                              noise, its noise buffers, style mixing, g), D logits
  tiny-n_mlp2.pt              an 8 px g_ema with a 2-layer mapping network (--n_mlp 2) and latent_avg,
  rosinality_n_mlp2_reference.npz  as convert_weight.py saves them; its images (psi 1 and 0.7)

Tiny networks: channel_base 128, channel_max 16 (16 channels at 4 and 8 px, 8 at 16 px), z = w = 16.
Every parameter and buffer gets a random offset after construction (biases and noise strengths start
at 0, where a mapping error would not show), G_ema differs from G, w_avg is non-zero.

Two documented shims, needed to run the original code here, change nothing it computes:
  - rosinality's ``op`` package compiles CUDA kernels at import (``cpp_extension.load``), which needs a
    working CUDA toolkit; on the CPU its functions take their own pure-PyTorch branches
    (``upfirdn2d_native``, ``fused_leaky_relu``'s CPU branch) and never touch the compiled module. So
    the import runs with ``cpp_extension.load`` replaced by a stub; their files are used unmodified.
  - rosinality hard-codes 512 channels below 64 px (its table in model.py). To keep the committed
    checkpoint small, this script loads model.py with that table (only the table, in both networks)
    replaced by the tiny one above.
"""

import argparse
import copy
import re
import sys
import types
from pathlib import Path

import numpy as np
import torch

HERE = Path(__file__).resolve().parent
RESOLUTION, Z_DIM, CHANNEL_BASE, CHANNEL_MAX = 16, 16, 128, 16
TINY_CHANNELS = {res: min(CHANNEL_BASE // res, CHANNEL_MAX) for res in (4, 8, 16, 32, 64, 128, 256, 512, 1024)}
BATCH = 4


def perturb(module, generator, scale=0.1):
    """Random offsets on every float parameter and buffer but the FIR filters (kept exact)."""
    with torch.no_grad():
        for name, tensor in list(module.named_parameters()) + list(module.named_buffers()):
            if tensor.dtype.is_floating_point and not name.endswith(("resample_filter", "kernel")):
                tensor.add_(torch.randn(tensor.shape, generator=generator) * scale)


def latents(seed, count=BATCH, dim=Z_DIM):
    return torch.randn([count, dim], generator=torch.Generator().manual_seed(seed))


def nvlabs(checkout):
    sys.path.insert(0, str(checkout))
    import pickle

    import dnnlib
    from training import networks  # noqa: F401 (the classes must be importable by name)
    from training.augment import AugmentPipe

    def kwargs(c_dim=0):
        # train.py's structure: class_name + EasyDicts, its fp16 and clamp settings, cfg 'stylegan2' mapping
        G_kwargs = dnnlib.EasyDict(class_name="training.networks.Generator", z_dim=Z_DIM, w_dim=Z_DIM,
                                   mapping_kwargs=dnnlib.EasyDict(num_layers=8),
                                   synthesis_kwargs=dnnlib.EasyDict(channel_base=CHANNEL_BASE, channel_max=CHANNEL_MAX,
                                                                    num_fp16_res=4, conv_clamp=256))
        D_kwargs = dnnlib.EasyDict(class_name="training.networks.Discriminator", block_kwargs=dnnlib.EasyDict(),
                                   mapping_kwargs=dnnlib.EasyDict(),
                                   epilogue_kwargs=dnnlib.EasyDict(mbstd_group_size=4),
                                   channel_base=CHANNEL_BASE, channel_max=CHANNEL_MAX, num_fp16_res=4, conv_clamp=256)
        common = dict(c_dim=c_dim, img_resolution=RESOLUTION, img_channels=3)
        return G_kwargs, D_kwargs, common

    def snapshot(path, modules, training_set_kwargs):
        # training/training_loop.py, "Save network snapshot"
        snapshot_data = dict(training_set_kwargs=dict(training_set_kwargs))
        for name, module in modules:
            if module is not None:
                module = copy.deepcopy(module).eval().requires_grad_(False).cpu()
            snapshot_data[name] = module
            del module
        with open(path, "wb") as f:
            pickle.dump(snapshot_data, f)

    g = torch.Generator().manual_seed(0)
    G_kwargs, D_kwargs, common = kwargs()
    torch.manual_seed(0)
    G = dnnlib.util.construct_class_by_name(**G_kwargs, **common).train().requires_grad_(False)
    D = dnnlib.util.construct_class_by_name(**D_kwargs, **common).train().requires_grad_(False)
    perturb(G, g)
    perturb(D, g)
    G_ema = copy.deepcopy(G).eval()
    perturb(G_ema, g, scale=0.02)
    for net in (G, G_ema):
        with torch.no_grad():
            net.mapping.w_avg.copy_(net.mapping(latents(7, 64), None).mean(dim=[0, 1]) + 0.05)
    augment_pipe = AugmentPipe(xflip=1, rotate90=1, xint=1, scale=1, rotate=1, aniso=1, xfrac=1, brightness=1,
                               contrast=1, lumaflip=1, hue=1, saturation=1).train().requires_grad_(False)
    augment_pipe.p.copy_(torch.as_tensor(0.123))
    training_set_kwargs = dnnlib.EasyDict(class_name="training.dataset.ImageFolderDataset", path="~/datasets/tiny.zip",
                                          use_labels=False, max_size=100, xflip=False, resolution=RESOLUTION)
    snapshot(HERE / "network-snapshot-tiny.pkl", [("G", G), ("D", D), ("G_ema", G_ema), ("augment_pipe", augment_pipe)],
             training_set_kwargs)

    z, z2, cutoff = latents(1), latents(2), 3
    with torch.no_grad():
        G_ema.eval(), G.eval(), D.eval()
        images = G_ema(z, None, noise_mode="const", force_fp32=True)
        images_trunc = G_ema(z, None, truncation_psi=0.7, noise_mode="const", force_fp32=True)
        ws = G_ema.mapping(z, None)
        ws[:, cutoff:] = G_ema.mapping(z2, None)[:, cutoff:]
        images_mixed = G_ema.synthesis(ws, noise_mode="const", force_fp32=True)
        images_G = G(z, None, noise_mode="const", force_fp32=True)
        logits = D(images, None, force_fp32=True)
    np.savez(HERE / "nvlabs_reference.npz", z=z.numpy(), z2=z2.numpy(), cutoff=cutoff, images=images.numpy(),
             images_trunc=images_trunc.numpy(), trunc=0.7, images_mixed=images_mixed.numpy(), images_G=images_G.numpy(),
             logits=logits.numpy())

    G_kwargs, _, common = kwargs(c_dim=2)
    conditional = dnnlib.util.construct_class_by_name(**G_kwargs, **common)
    snapshot(HERE / "network-conditional.pkl", [("G_ema", conditional)], training_set_kwargs)

    # Another mapping lr multiplier, no noise inputs, no clamp, 8 px, G_ema only
    G_kwargs, _, common = kwargs()
    G_kwargs.mapping_kwargs.lr_multiplier = 0.1
    G_kwargs.synthesis_kwargs.update(use_noise=False, conv_clamp=None, num_fp16_res=0)
    variant = dnnlib.util.construct_class_by_name(**G_kwargs, **dict(common, img_resolution=8)).eval()
    perturb(variant, g)
    snapshot(HERE / "network-variant.pkl", [("G_ema", variant)], training_set_kwargs)
    with torch.no_grad():
        images_variant = variant(z, None, truncation_psi=0.5, noise_mode="const", force_fp32=True)
    np.savez(HERE / "nvlabs_variant_reference.npz", z=z.numpy(), trunc=0.5, images=images_variant.numpy())

    # --cfg auto / cifar: a 2-layer mapping network (train.py: mapping_kwargs.num_layers = spec.map), 8 px
    g, (G_kwargs, D_kwargs, common) = torch.Generator().manual_seed(10), kwargs()
    G_kwargs.mapping_kwargs.num_layers = 2
    common = dict(common, img_resolution=8)
    torch.manual_seed(10)
    G = dnnlib.util.construct_class_by_name(**G_kwargs, **common).train().requires_grad_(False)
    D = dnnlib.util.construct_class_by_name(**D_kwargs, **common).train().requires_grad_(False)
    perturb(G, g)
    perturb(D, g)
    G_ema = copy.deepcopy(G).eval()
    perturb(G_ema, g, scale=0.02)
    for net in (G, G_ema):
        with torch.no_grad():
            net.mapping.w_avg.copy_(net.mapping(latents(7, 64), None).mean(dim=[0, 1]) + 0.05)
    snapshot(HERE / "network-map2.pkl", [("G", G), ("D", D), ("G_ema", G_ema), ("augment_pipe", None)],
             training_set_kwargs)
    z, z2, cutoff = latents(11), latents(12), 2
    with torch.no_grad():
        G.eval(), D.eval()
        images = G_ema(z, None, noise_mode="const", force_fp32=True)
        images_trunc = G_ema(z, None, truncation_psi=0.7, noise_mode="const", force_fp32=True)
        ws = G_ema.mapping(z, None)
        ws[:, cutoff:] = G_ema.mapping(z2, None)[:, cutoff:]
        images_mixed = G_ema.synthesis(ws, noise_mode="const", force_fp32=True)
        images_G = G(z, None, noise_mode="const", force_fp32=True)
        logits = D(images, None, force_fp32=True)
    np.savez(HERE / "nvlabs_map2_reference.npz", z=z.numpy(), z2=z2.numpy(), cutoff=cutoff, images=images.numpy(),
             images_trunc=images_trunc.numpy(), trunc=0.7, images_mixed=images_mixed.numpy(),
             images_G=images_G.numpy(), logits=logits.numpy())
    sys.path.remove(str(checkout))


def rosinality(checkout):
    import torch.utils.cpp_extension as cpp_extension

    class NoKernels:  # shim: the CPU branches of rosinality's ops never use the compiled module
        def __getattr__(self, name):
            raise RuntimeError("rosinality's CUDA kernels are not built here; only its CPU paths may run")

    sys.path.insert(0, str(checkout))
    load, cpp_extension.load = cpp_extension.load, lambda *args, **kwargs: NoKernels()
    try:
        import op  # noqa: F401
    finally:
        cpp_extension.load = load
    source = (Path(checkout) / "model.py").read_text()
    source, count = re.subn(r"(channels = \{)[^}]*(\})", r"\1**TINY_CHANNELS\2", source)
    assert count == 2, "rosinality's model.py changed: expected two channel tables"
    model = types.ModuleType("model")
    model.__file__ = str(Path(checkout) / "model.py")
    model.TINY_CHANNELS = TINY_CHANNELS
    exec(compile(source, model.__file__, "exec"), model.__dict__)
    sys.modules["model"] = model

    # train.py: args, networks, accumulate(g_ema, g, 0), Adam with lazy-regularisation ratios
    args = argparse.Namespace(path="tiny.lmdb", arch="stylegan2", iter=800000, batch=16, n_sample=64, size=RESOLUTION,
                              r1=10, path_regularize=2, path_batch_shrink=2, d_reg_every=16, g_reg_every=4,
                              mixing=0.9, ckpt=None, lr=0.002, channel_multiplier=2, wandb=False, local_rank=0,
                              augment=False, augment_p=0, ada_target=0.6, ada_length=500 * 1000, ada_every=256,
                              distributed=False, latent=Z_DIM, n_mlp=8, start_iter=0)
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(1)
    generator = model.Generator(args.size, args.latent, args.n_mlp, channel_multiplier=args.channel_multiplier)
    discriminator = model.Discriminator(args.size, channel_multiplier=args.channel_multiplier)
    g_ema = model.Generator(args.size, args.latent, args.n_mlp, channel_multiplier=args.channel_multiplier).eval()
    perturb(generator, g)
    perturb(discriminator, g)
    g_ema.load_state_dict(generator.state_dict())
    perturb(g_ema, g, scale=0.02)
    g_reg_ratio = args.g_reg_every / (args.g_reg_every + 1)
    d_reg_ratio = args.d_reg_every / (args.d_reg_every + 1)
    g_optim = torch.optim.Adam(generator.parameters(), lr=args.lr * g_reg_ratio,
                               betas=(0 ** g_reg_ratio, 0.99 ** g_reg_ratio))
    d_optim = torch.optim.Adam(discriminator.parameters(), lr=args.lr * d_reg_ratio,
                               betas=(0 ** d_reg_ratio, 0.99 ** d_reg_ratio))
    torch.save({"g": generator.state_dict(), "d": discriminator.state_dict(), "g_ema": g_ema.state_dict(),
                "g_optim": g_optim.state_dict(), "d_optim": d_optim.state_dict(), "args": args, "ada_aug_p": 0.0},
               HERE / "tiny.pt")

    z, z2, inject_index = latents(3), latents(4), 3
    noise_generator = torch.Generator().manual_seed(5)
    sizes = [2 ** ((i + 5) // 2) for i in range(g_ema.num_layers)]  # model.Generator's noise_{i} sizes
    noise = [torch.randn([BATCH, 1, size, size], generator=noise_generator) for size in sizes]
    with torch.no_grad():
        images, _ = g_ema([z], noise=noise)
        images_const, _ = g_ema([z], randomize_noise=False)
        images_mixed, _ = g_ema([z, z2], inject_index=inject_index, noise=noise)
        images_g, _ = generator([z], noise=noise)
        logits = discriminator(images)
    np.savez(HERE / "rosinality_reference.npz", z=z.numpy(), z2=z2.numpy(), inject_index=inject_index,
             **{f"noise{i}": n.numpy() for i, n in enumerate(noise)}, images=images.numpy(),
             images_const=images_const.numpy(), images_mixed=images_mixed.numpy(), images_g=images_g.numpy(),
             logits=logits.numpy())

    # --n_mlp 2, 8 px, convert_weight.py's layout (g_ema and latent_avg): truncation toward latent_avg
    torch.manual_seed(20)
    g = torch.Generator().manual_seed(21)
    g_ema = model.Generator(8, args.latent, 2, channel_multiplier=args.channel_multiplier).eval()
    perturb(g_ema, g)
    latent_avg = g_ema.mean_latent(64)[0] + 0.05
    torch.save({"g_ema": g_ema.state_dict(), "latent_avg": latent_avg}, HERE / "tiny-n_mlp2.pt")
    z = latents(22)
    noise = [torch.randn([BATCH, 1, 2 ** ((i + 5) // 2), 2 ** ((i + 5) // 2)], generator=noise_generator)
             for i in range(g_ema.num_layers)]
    with torch.no_grad():
        images, _ = g_ema([z], noise=noise)
        images_trunc, _ = g_ema([z], truncation=0.7, truncation_latent=latent_avg, noise=noise)
    np.savez(HERE / "rosinality_n_mlp2_reference.npz", z=z.numpy(), **{f"noise{i}": n.numpy() for i, n in enumerate(noise)},
             images=images.numpy(), images_trunc=images_trunc.numpy(), trunc=0.7)
    sys.path.remove(str(checkout))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nvlabs", required=True, type=Path, help="stylegan2-ada-pytorch checkout")
    parser.add_argument("--rosinality", required=True, type=Path, help="stylegan2-pytorch checkout")
    options = parser.parse_args()
    torch.set_grad_enabled(False)
    nvlabs(options.nvlabs.resolve())
    rosinality(options.rosinality.resolve())
    for path in sorted(HERE.iterdir()):
        print(f"{path.name}: {path.stat().st_size} bytes")
