"""The StyleGAN2 search commands: ``stylenas search`` and ``stylenas bench-search`` (also
``scripts/search_stylegan2.py``, ``scripts/bench_search.py``)."""
import click

from ..devices import resolve_device
from ..io import dump_json
from ..runs import RunCommand
from . import bench
from ..datasets import DatasetError
from .alphagan import NonFiniteError
from .genotype import GenotypeError
from .run import STYLEGAN2_PRESETS, SearchConfig, SearchError, run_search


@click.command("search", cls=RunCommand)
@click.option("--data", required=True, type=click.Path(), help="LMDB of images (prepare_data.py or rosinality's).")
@click.option("--outdir", required=True, type=click.Path(file_okay=False), help="Output folder.")
@click.option("--space", type=click.Choice(["micro", "macro"]), default="micro", show_default=True,
              help="micro: one op choice shared by all layers of a kind; macro: one per layer.")
@click.option("--dynamic-w/--no-dynamic-w", default=True, show_default=True,
              help="Search the latent W_1..W_8 of every conv and toRGB layer (else W_8 everywhere).")
@click.option("--torgb-w", type=click.Choice(["tied", "free"]), default="tied", show_default=True,
              help="tied: each toRGB reads the latent of the next block's up-sampling conv, only the last has its "
                   "own (the paper's space, StyleGAN2's w layout); free: every toRGB has its own beta.")
@click.option("--resolution", type=int, help="Image resolution (a power of two stored in the LMDB; default: largest).")
@click.option("--preset", type=click.Choice(STYLEGAN2_PRESETS), default="stylegan2", show_default=True,
              help="stylegan2: the paper's T=20, R=5, S=20, 500 iterations, batch 2, 1/8 channels; tiny: CPU demo.")
@click.option("--iters", type=int, help="Search iterations (default: the preset's).")
@click.option("--batch", type=int, help="Batch size (default: the preset's).")
@click.option("--channel-mult", type=float, help="Channel multiplier of G and D (default: the preset's).")
@click.option("--loss", type=click.Choice(["hinge", "logistic"]),
              help="Adversarial loss: hinge (alphaGAN eq. 5, every preset's default) or StyleGAN2's logistic.")
@click.option("--device", default="auto", show_default=True, help="cuda, cuda:N, cpu or auto.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--sample-every", type=click.IntRange(min=0), default=50, show_default=True,
              help="Sample grid every N iterations (0: only at the end).")
@click.option("--checkpoint-every", type=click.IntRange(min=0), default=10, show_default=True,
              help="Checkpoint (search-state.pt, genotype.json) every N iterations; 0: only at the end.")
@click.option("--workers", type=click.IntRange(min=0), default=2, show_default=True,
              help="Data loader worker processes per data half.")
@click.option("--max-nonfinite", type=click.IntRange(min=1), default=25, show_default=True,
              help="Stop after this many optimiser steps in a row with a non-finite loss or gap (each is skipped).")
@click.option("--resume", is_flag=True, help="Continue the search in OUTDIR from its last checkpoint.")
def search_command(**options):
    """alphaGAN (Tian et al.) on the StyleGAN2 search space: writes OUTDIR/genotype.json."""
    try:
        run_search(SearchConfig(**options))
    except (SearchError, GenotypeError, DatasetError, NonFiniteError) as error:  # anything else: a bug, traceback
        raise click.ClickException(str(error))


@click.command("bench-search")
@click.option("--preset", default=None, help="Default: stylegan2 on a GPU, tiny on the CPU.")
@click.option("--resolution", type=int, default=None, help="Default: 256 on a GPU, 16 on the CPU.")
@click.option("--device", default="auto", show_default=True)
@click.option("--iterations", type=int, default=2, show_default=True, help="Timed iterations per paradigm.")
def bench_search_command(preset, resolution, device, iterations):
    """Seconds per alphaGAN search iteration (all four paradigms) against plain StyleGAN2 steps; JSON."""
    try:
        device = resolve_device(device)
    except ValueError as error:
        raise click.ClickException(str(error))
    gpu = device.type == "cuda"
    result = bench.run(preset or ("stylegan2" if gpu else "tiny"), resolution or (256 if gpu else 16), device,
                       iterations)
    click.echo(dump_json(result))
