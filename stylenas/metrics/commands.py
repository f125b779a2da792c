"""The metric commands: ``stylenas fid`` and ``stylenas bench-fid`` (also ``scripts/fid.py``,
``scripts/bench_fid.py``)."""
import json

import click

from ..io import dump_json
from ..runs import RunCommand
from . import bench
from .cli import FIDError, evaluate, format_text


@click.command("fid", cls=RunCommand, context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("a", type=click.Path())
@click.argument("b", type=click.Path(), required=False)
@click.option("--num", type=int, help="Use the first N images of A (default: all).")
@click.option("--num-ref", type=int, help="Use the first M images of B (default: all of them, NVlabs' "
              "fid50k_full convention).")
@click.option("--resolution", type=int, help="The image size to read from an .lmdb input that stores several "
              "(default: the largest).")
@click.option("--recursive", is_flag=True, help="Also read images in a folder's subfolders (default: like "
              "pytorch-fid, only the files directly inside it).")
@click.option("--batch", "--batch-size", "batch", default=50, show_default=True, help="Images per Inception batch.")
@click.option("--device", default="auto", show_default=True, help="cpu, cuda, cuda:N or auto.")
@click.option("--workers", "--num-workers", "workers", default=4, show_default=True,
              help="Data-loading worker processes.")
@click.option("--inception", type=click.Path(), help="pt_inception-2015-12-05-6726825d.pth (else "
              "$STYLENAS_INCEPTION, the torch hub cache, or a download).")
@click.option("--save-stats", "save_stats", type=click.Path(dir_okay=False), help="Write A's mu and sigma here "
              "(.npz; checked before any work starts).")
@click.option("--is", "want_is", is_flag=True, help="Also the Inception Score of A (10 splits).")
@click.option("--kid", "want_kid", is_flag=True, help="Also the Kernel Inception Distance of A and B.")
@click.option("--prdc", "want_prdc", is_flag=True, help="Also improved precision and recall (k = 3) and density "
              "and coverage (k = 5) of A against reference B, on the pool features (B must be images, not an .npz).")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object instead of text.")
@click.option("--trunc", type=float, default=1.0, show_default=True, help="Truncation psi of a StyleGAN2 "
              "checkpoint input.")
def fid_command(a, b, num, num_ref, resolution, recursive, batch, device, workers, inception, save_stats, want_is,
                want_kid, want_prdc, as_json, trunc):
    """FID between A and B; each an image folder, an .lmdb, an .npz (mu, sigma) or a generator
    checkpoint (--num images of its G_ema, seeds 0..N-1, quantised as saved PNGs would be).

    With only A and --save-stats, computes and saves A's statistics. The last line is
    `FID: <value>`, after the inputs (image counts, sizes), the device and the protocol;
    progress and warnings go to stderr.
    """
    try:
        result = evaluate(a, b, num=num, num_ref=num_ref, resolution=resolution, recursive=recursive, batch=batch,
                          device=device, workers=workers, inception=inception, save_stats_path=save_stats,
                          want_is=want_is, want_kid=want_kid, trunc=trunc, want_prdc=want_prdc)
    except FIDError as e:
        raise click.ClickException(str(e)) from None
    if as_json:
        click.echo(json.dumps(result))
    else:
        for line in format_text(result):
            click.echo(line)
    if "save_stats_error" in result:
        raise click.ClickException(f"--save-stats: {result['save_stats_error']} (the results above are complete)")


@click.command("bench-fid")
@click.option("--dims", default=2048, show_default=True, help="Feature dimensions (2048 for the FID Inception).")
@click.option("--samples", default=4096, show_default=True, help="Samples behind each statistics pair.")
@click.option("--batch", default=16, show_default=True, help="Candidates in the batched call.")
@click.option("--repeats", default=3, show_default=True, help="Timed repetitions of the fast routes (median).")
@click.option("--slow-repeats", default=1, show_default=True, help="Timed repetitions of the scipy sqrtm route.")
@click.option("--few-samples", default=500, show_default=True,
              help="Also time singular statistics from this many samples (0: skip).")
@click.option("--device", default="cpu", show_default=True, help="cpu or cuda (ours only; peers run on the CPU).")
@click.option("--out", type=click.Path(dir_okay=False), help="Also write the JSON here.")
def bench_fid_command(dims, samples, batch, repeats, slow_repeats, few_samples, device, out):
    """Frechet distance: ours vs pytorch-fid's scipy sqrtm vs torchmetrics, batched vs looped, on the
    same statistics in one run; progress on stderr, JSON on stdout."""
    result = bench.run(dims=dims, samples=samples, batch=batch, repeats=repeats, slow_repeats=slow_repeats,
                       few_samples=few_samples, device=device, log=lambda line: click.echo(line, err=True))
    click.echo(dump_json(result, out))
