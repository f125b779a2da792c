"""Write deterministic synthetic demo images (shaded shapes on textured backgrounds) to an LMDB."""
import sys

import click

from stylenas.datasets import DatasetError, make_demo_data


@click.command()
@click.option("--out", required=True, type=click.Path(), help="Output LMDB (a folder, e.g. demo.lmdb).")
@click.option("--size", "sizes", required=True, multiple=True, help="Image size; repeat or comma-separate for several.")
@click.option("--num", default=2000, show_default=True, help="Number of images.")
@click.option("--seed", default=0, show_default=True, help="Image i depends only on (seed, i).")
@click.option("--format", "image_format", type=click.Choice(["jpeg", "png"]), default="jpeg", show_default=True)
@click.option("--quality", default=95, show_default=True, help="JPEG quality.")
@click.option("--force", is_flag=True, help="Replace OUT if it exists.")
def main(out, sizes, num, seed, image_format, quality, force):
    """Demo data for `make demo` and the tests: no download needed."""
    try:
        s = make_demo_data(out, sizes, num, seed=seed, image_format=image_format, quality=quality, force=force)
    except DatasetError as error:
        raise click.ClickException(str(error))
    click.echo(f"wrote {s['count']} demo images at {', '.join(map(str, s['sizes']))} px to {s['out']} "
               f"in {s['seconds']:.1f} s", err=True)


if __name__ == "__main__":
    sys.exit(main())
