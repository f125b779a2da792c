"""The data commands: ``stylenas prepare-data``, ``stylenas make-demo-data``, ``stylenas bench-data``
(also ``scripts/prepare_data.py``, ``scripts/make_demo_data.py``, ``scripts/bench_data.py``)."""
import click

from ..io import dump_json
from ..runs import RunCommand
from . import bench
from .demo import make_demo_data
from .errors import DatasetError
from .prepare import check_network_sizes, prepare_data, summary_lines


@click.command("prepare-data", cls=RunCommand)
@click.argument("src", type=click.Path())
@click.option("--out", required=True, type=click.Path(), help="Output LMDB (a folder, e.g. ffhq.lmdb).")
@click.option("--size", "sizes", required=True, multiple=True,
              help="Output size; repeat (--size 256 --size 1024) or comma-separate (--size 256,1024).")
@click.option("--resize-filter", type=click.Choice(["lanczos", "box", "bicubic"]), default="lanczos",
              show_default=True, help="box reproduces the NVlabs FFHQ-256 FID numbers.")
@click.option("--format", "image_format", type=click.Choice(["jpeg", "png"]), default="jpeg", show_default=True,
              help="jpeg: small and fast to decode; png: lossless.")
@click.option("--quality", type=click.IntRange(1, 100), default=95, show_default=True, help="JPEG quality.")
@click.option("--workers", type=click.IntRange(1), default=None,
              help="Processes decoding and resizing images [default: CPU count, at most 8].")
@click.option("--force", is_flag=True, help="Replace OUT if it exists.")
@click.option("--from", "source_format", type=click.Choice(["cifar10", "stl10"]), default=None,
              help="SRC is CIFAR-10's cifar-10-batches-py (50k training images) or STL-10's stl10_binary "
                   "(unlabeled + train, 105k) folder instead of image files.")
def prepare_data_command(src, out, sizes, resize_filter, image_format, quality, workers, force, source_format):
    """Resize (short side) and centre-crop every image of SRC (a folder, searched recursively, or a
    .zip) to each --size and store them in OUT. Unreadable files are skipped and listed."""
    try:
        check_network_sizes(sizes)
        summary = prepare_data(src, out, sizes, resize_filter=resize_filter, image_format=image_format,
                               quality=quality, workers=workers, force=force,
                               source_format=source_format)
    except DatasetError as error:
        raise click.ClickException(str(error))
    for line in summary_lines(summary):
        click.echo(line, err=True)


@click.command("make-demo-data", cls=RunCommand)
@click.option("--out", required=True, type=click.Path(), help="Output LMDB (a folder, e.g. demo.lmdb).")
@click.option("--size", "sizes", required=True, multiple=True, help="Image size; repeat or comma-separate for several.")
@click.option("--num", type=click.IntRange(min=1), default=2000, show_default=True, help="Number of images.")
@click.option("--seed", default=0, show_default=True, help="Image i depends only on (seed, i).")
@click.option("--format", "image_format", type=click.Choice(["jpeg", "png"]), default="jpeg", show_default=True)
@click.option("--quality", type=click.IntRange(1, 100), default=95, show_default=True, help="JPEG quality.")
@click.option("--force", is_flag=True, help="Replace OUT if it exists.")
def make_demo_data_command(out, sizes, num, seed, image_format, quality, force):
    """Deterministic synthetic images (shaded shapes on textured backgrounds) for `make demo` and the
    tests: no download needed."""
    try:
        check_network_sizes(sizes)
        s = make_demo_data(out, sizes, num, seed=seed, image_format=image_format, quality=quality, force=force)
    except DatasetError as error:
        raise click.ClickException(str(error))
    click.echo(f"wrote {s['count']} demo images at {', '.join(map(str, s['sizes']))} px to {s['out']} "
               f"in {s['seconds']:.1f} s", err=True)


@click.command("bench-data")
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
def bench_data_command(size, num, batch, workers, repeats, prepare_num, prepare_workers, threads, out):
    """Images/s of (a) a reader written like rosinality's MultiResolutionDataset (PIL, ToTensor,
    Normalize: float on the host) and (b) ours (torchvision decode to uint8), same LMDB, same
    DataLoader settings, in one run; plus prepare_data images/s. Prints JSON to stdout."""
    ints = lambda text: tuple(int(x) for x in text.split(",") if x.strip())
    result = bench.run(size=size, num=num, batch=batch, workers=ints(workers), repeats=repeats,
                       prepare_num=prepare_num, prepare_workers=ints(prepare_workers), threads=threads,
                       log=lambda line: click.echo(line, err=True))
    click.echo(dump_json(result, out))
