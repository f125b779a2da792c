"""The retraining commands: ``stylenas train``, ``stylenas generate``, ``stylenas bench-train`` (also
``scripts/train_stylegan2.py``, ``scripts/generate.py``, ``scripts/bench_train.py``)."""
from pathlib import Path

import click

from ..io import dump_json
from ..runs import RunCommand
from .checkpoint import CheckpointError
from .config import AUG_MODES, AUGPIPE_NAMES, CFG_NAMES


@click.command("train", cls=RunCommand)
@click.option("--data", required=True, type=click.Path(), help="LMDB of images (prepare_data.py or rosinality's).")
@click.option("--genotype", required=True, help="genotype.json of a search, 'stylegan2' (the original "
              "architecture, the baseline) or a published one: alphagan_celeba128, alphagan_church256, "
              "alphagan_ffhq1024 (alphaGAN Table 9; docs/genotypes.md).")
@click.option("--outdir", required=True, type=click.Path(file_okay=False), help="Output folder.")
@click.option("--cfg", type=click.Choice(CFG_NAMES), default="auto", show_default=True,
              help="NVlabs' presets (batch, mbstd group, channels, lr, gamma, EMA, mapping), paper (the alphaGAN "
              "paper's retraining: config-f without path length) or tiny (CPU demo).")
@click.option("--resolution", type=int, help="With --genotype stylegan2: the resolution (default: largest stored).")
@click.option("--batch", type=int, help="Total batch over all processes.")
@click.option("--batch-gpu", type=int, help="Images per round of gradient accumulation on each process (NVlabs' "
              "--batch-gpu; default: the whole per-process batch, one round).")
@click.option("--kimg", type=float, help="Training length in thousands of real images shown (fractions allowed).")
@click.option("--snap", type=float, help="kimg between snapshots (fractions allowed).")
@click.option("--tick", type=float, default=4.0, show_default=True, help="kimg between progress lines and "
              "stats.jsonl records (NVlabs' tick; a snapshot also ends a tick).")
@click.option("--gamma", type=float, help="R1 weight.")
@click.option("--pl-weight", type=float, help="Path-length weight (0: off).")
@click.option("--mixing", type=float, help="Style-mixing probability.")
@click.option("--ema-kimg", type=float, help="EMA half-life in kimg.")
@click.option("--mbstd-group", type=int, help="Minibatch-stddev group size.")
@click.option("--lr", type=float, help="Adam learning rate of G and D.")
@click.option("--fp16-res", type=int, help="Highest resolutions run in reduced precision on a GPU (0: none).")
@click.option("--precision", type=click.Choice(["bf16", "fp16"]), help="Reduced precision of --fp16-res layers.")
@click.option("--metrics", type=click.Choice(["fid50k_full", "none"]), help="FID at every snapshot.")
@click.option("--fid-num", type=int, help="Generated images per FID (default 50000).")
@click.option("--fid-stats", type=click.Path(dir_okay=False), help="Reference statistics (.npz); default: "
              "computed from --data once and cached.")
@click.option("--inception", type=click.Path(dir_okay=False), help="FID Inception weights file.")
@click.option("--seed", type=int, help="Random seed (default 0).")
@click.option("--aug", type=click.Choice(AUG_MODES), help="Discriminator augmentation: ada (p adapts; default of "
              "NVlabs' presets), fixed (p = --p) or noaug (default of --cfg paper and tiny).")
@click.option("--p", "--aug-p", "augment_p", type=float, help="Augmentation probability: the fixed p (--aug fixed), "
              "or ADA's initial p. Under torchrun write --aug-p: torchrun's parser refuses --p.")
@click.option("--target", "ada_target", type=float, help="ADA target of the mean sign of D's real logits "
              "(default 0.6).")
@click.option("--ada-kimg", type=float, help="ADA speed: kimg for p to move by 1 (default 500).")
@click.option("--augpipe", type=click.Choice(AUGPIPE_NAMES), help="Augmentations used (default bgc: blits, "
              "general geometry, colour).")
@click.option("--mirror", type=click.BOOL, metavar="0|1", help="Mirror each real image with probability 1/2 "
              "(default 0, as NVlabs).")
@click.option("--init", type=click.Path(dir_okay=False), help="Start from the G, D and G_ema weights of this "
              "checkpoint (ours, an NVlabs network pickle or a rosinality checkpoint); its layers must match.")
@click.option("--resume", is_flag=True, help="Continue from OUTDIR/checkpoint.pt.")
@click.option("--device", default="auto", show_default=True, help="cuda, cuda:N, cpu or auto (torchrun: the "
              "local rank's GPU).")
@click.option("--workers", type=click.IntRange(min=0), default=2, show_default=True,
              help="Data-loading worker processes.")
def train_command(data, genotype, outdir, cfg, resolution, resume, device, workers, fid_stats, inception, tick,
                  **rest):
    """Retrain a genotype with StyleGAN2's recipe; `torchrun --nproc_per_node N` for N processes."""
    from .run import TrainError, TrainOptions, train

    init = rest.pop("init")
    overrides = {k: v for k, v in rest.items() if v is not None}  # TrainConfig fields
    try:
        train(TrainOptions(data=data, genotype=genotype, outdir=outdir, cfg=cfg, resolution=resolution,
                           resume=resume, device=device, workers=workers, fid_stats=fid_stats, inception=inception,
                           tick=tick,
                           init=init, overrides=overrides))
    except (TrainError, CheckpointError, ValueError) as error:
        raise click.ClickException(str(error)) from None


@click.command("generate", cls=RunCommand)
@click.option("--ckpt", required=True, type=click.Path(dir_okay=False), help="Training checkpoint (any snapshot), "
              "NVlabs stylegan2-ada-pytorch network pickle or rosinality checkpoint.")
@click.option("--seeds", default="0-63", show_default=True, help="Seeds, e.g. 0-63,100.")
@click.option("--trunc", type=float, default=1.0, show_default=True, help="Truncation psi (each W_i toward its mean).")
@click.option("--outdir", required=True, type=click.Path(file_okay=False))
@click.option("--grid", is_flag=True, help="One grid.png instead of one file per seed.")
@click.option("--mix-rows", help="Seeds of style-mixing rows (with the --seeds as columns): writes mixing.png.")
@click.option("--mix-cutoff", type=int, default=None, help="First latent slot taken from the row seed "
              "(default: the middle).")
@click.option("--noise-mode", type=click.Choice(["const", "random", "none"]), default="const", show_default=True)
@click.option("--device", default="auto", show_default=True)
def generate_command(ckpt, seeds, trunc, outdir, grid, mix_rows, mix_cutoff, noise_mode, device):
    """Images of a trained generator (G_ema): OUTDIR/seed0000.png ... (the same seed, the same image)."""
    import torchvision

    from ..devices import resolve_device
    from ..plots import save_image_atomic
    from .checkpoint import load_generator
    import torch

    from ..runs import ProgressLine
    from .generate import generate_batches, parse_seeds, style_mixing
    from .runlog import save_image_grid

    try:  # every option is checked before anything is written
        dev = resolve_device(device)
        seed_list = parse_seeds(seeds)
        rows = parse_seeds(mix_rows) if mix_rows else None
        G, info = load_generator(ckpt, dev)
    except (ValueError, CheckpointError) as error:
        raise click.ClickException(str(error)) from None
    if info["kind"] != "stylegan2" and (mix_rows or trunc != 1.0):
        raise click.ClickException(f"{ckpt}: truncation and style mixing need a StyleGAN2 checkpoint, this is "
                                   f"{info['kind']}")
    cutoff = None
    if rows:
        num_ws = G.synthesis.num_ws
        cutoff = mix_cutoff if mix_cutoff is not None else num_ws // 2
        if not 1 <= cutoff < num_ws:
            raise click.ClickException(f"--mix-cutoff must be in 1..{num_ws - 1} (the network has {num_ws} "
                                       f"latent slots), got {cutoff}")
    outdir, grid_images = Path(outdir), []
    with ProgressLine(len(seed_list), f"generate {outdir}", unit="images") as bar:  # written batch by batch
        for seeds, images in generate_batches(G, seed_list, trunc, dev, noise_mode=noise_mode):
            if grid:
                grid_images.append(images)
            else:
                for seed, image in zip(seeds, images):
                    save_image_atomic(torchvision.transforms.functional.to_pil_image(image),
                                      outdir / f"seed{seed:04d}.png")
            bar.update(len(seeds))
    if grid:
        save_image_grid(torch.cat(grid_images), outdir / "grid.png", nrow=min(8, len(seed_list)))
    if rows:
        mixed = style_mixing(G, rows, seed_list, cutoff, trunc, dev, noise_mode)
        save_image_grid(mixed, outdir / "mixing.png", nrow=len(seed_list) + 1)
    click.echo(f"{len(seed_list)} images of {ckpt} (kimg {info.get('kimg')}) in {outdir}")


@click.command("bench-train")
@click.option("--resolution", type=int, default=None, help="Default: 256 on a GPU, 16 on the CPU.")
@click.option("--cfg", type=click.Choice(CFG_NAMES), default=None, help="Default: paper256 on a GPU, tiny on the CPU.")
@click.option("--batch", type=int, default=None, help="Default: the cfg's.")
@click.option("--steps", type=int, default=16, show_default=True, help="Timed steps (a multiple of 16 amortises "
              "R1 and path length exactly).")
@click.option("--nvlabs", type=click.Path(file_okay=False), help="A stylegan2-ada-pytorch checkout: also time its "
              "networks and StyleGAN2Loss at the same configuration.")
@click.option("--precision", type=click.Choice(["bf16", "fp16"]), default=None, help="Ours on a GPU (NVlabs: fp16); "
              "default bf16.")
@click.option("--device", default="auto", show_default=True)
@click.option("--out", type=click.Path(dir_okay=False), help="Also write the JSON here.")
def bench_train_command(resolution, cfg, batch, steps, nvlabs, precision, device, out):
    """Seconds per kimg of full training steps (G, D, lazy R1 and path length amortised), ours vs NVlabs; JSON."""
    from ..devices import resolve_device
    from . import bench

    try:
        dev = resolve_device(device)
        result = bench.run(dev, resolution, cfg, batch, steps, nvlabs, precision=precision,
                           log=lambda line: click.echo(line, err=True))
    except (ValueError, bench.BenchError) as error:
        raise click.ClickException(str(error)) from None
    click.echo(dump_json(result, out))
