"""Benchmark the LMDB data path: our reader vs a rosinality-style reader, and prepare_data, as JSON."""
import sys

import click

from stylenas.datasets import bench
from stylenas.io import dump_json


@click.command()
@click.option("--size", default=256, show_default=True, help="Image size of the JPEG LMDB.")
@click.option("--num", default=512, show_default=True, help="Images in the benchmark LMDB.")
@click.option("--batch", default=32, show_default=True, help="DataLoader batch size.")
@click.option("--workers", default="0,1,2", show_default=True, help="DataLoader worker counts to time.")
@click.option("--repeats", default=3, show_default=True, help="Timed runs per case (median).")
@click.option("--prepare-num", default=96, show_default=True, help="Source images for the prepare_data timing.")
@click.option("--prepare-workers", default="1,2", show_default=True, help="prepare_data worker counts to time.")
@click.option("--threads", default=1, show_default=True,
              help="torch threads of the main process (0: leave torch's default); workers use 1.")
@click.option("--out", type=click.Path(dir_okay=False), help="Also write the JSON here.")
def main(size, num, batch, workers, repeats, prepare_num, prepare_workers, threads, out):
    """Images/s of (a) a reader written like rosinality's MultiResolutionDataset (PIL, ToTensor,
    Normalize: float on the host) and (b) ours (torchvision decode to uint8), same LMDB, same
    DataLoader settings, in one run; plus prepare_data images/s. Prints JSON to stdout."""
    ints = lambda text: tuple(int(x) for x in text.split(",") if x.strip())
    result = bench.run(size=size, num=num, batch=batch, workers=ints(workers), repeats=repeats,
                       prepare_num=prepare_num, prepare_workers=ints(prepare_workers), threads=threads,
                       log=lambda line: click.echo(line, err=True))
    click.echo(dump_json(result, out))


if __name__ == "__main__":
    sys.exit(main())
