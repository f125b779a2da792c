"""Folder or .zip of images -> LMDB (rosinality's stylegan2-pytorch layout plus our metadata)."""
import sys

import click

from stylenas.datasets import DatasetError, prepare_data
from stylenas.datasets.prepare import summary_lines


@click.command()
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
def main(src, out, sizes, resize_filter, image_format, quality, workers, force):
    """Resize (short side) and centre-crop every image of SRC (a folder, searched recursively, or a
    .zip) to each --size and store them in OUT. Unreadable files are skipped and listed."""
    try:
        summary = prepare_data(src, out, sizes, resize_filter=resize_filter, image_format=image_format,
                               quality=quality, workers=workers, force=force)
    except DatasetError as error:
        raise click.ClickException(str(error))
    for line in summary_lines(summary):
        click.echo(line, err=True)


if __name__ == "__main__":
    sys.exit(main())
