"""Benchmark the Frechet distance (ours vs pytorch-fid's scipy sqrtm vs torchmetrics; batched vs looped) as JSON."""
import json
import sys
from pathlib import Path

import click

from stylenas.metrics import bench


@click.command()
@click.option("--dims", default=2048, show_default=True, help="Feature dimensions (2048 for the FID Inception).")
@click.option("--samples", default=4096, show_default=True, help="Samples behind each statistics pair.")
@click.option("--batch", default=16, show_default=True, help="Candidates in the batched call.")
@click.option("--repeats", default=3, show_default=True, help="Timed repetitions of the fast routes (median).")
@click.option("--slow-repeats", default=1, show_default=True, help="Timed repetitions of the scipy sqrtm route.")
@click.option("--few-samples", default=500, show_default=True,
              help="Also time singular statistics from this many samples (0: skip).")
@click.option("--device", default="cpu", show_default=True, help="cpu or cuda (ours only; peers run on the CPU).")
@click.option("--out", type=click.Path(dir_okay=False), help="Also write the JSON here.")
def main(dims, samples, batch, repeats, slow_repeats, few_samples, device, out):
    """Times every route on the same statistics in one run; progress on stderr, JSON on stdout."""
    result = bench.run(dims=dims, samples=samples, batch=batch, repeats=repeats, slow_repeats=slow_repeats,
                       few_samples=few_samples, device=device, log=lambda line: click.echo(line, err=True))
    text = json.dumps(result, indent=2)
    if out:
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        Path(out).write_text(text + "\n")
    click.echo(text)


if __name__ == "__main__":
    sys.exit(main())
