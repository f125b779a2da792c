"""Benchmark alphaGAN search iterations (all four paradigms) against plain StyleGAN2 steps; JSON."""
import sys

import click

from stylenas.devices import resolve_device
from stylenas.io import dump_json
from stylenas.search import bench


@click.command()
@click.option("--preset", default=None, help="Default: stylegan2 on a GPU, tiny on the CPU.")
@click.option("--resolution", type=int, default=None, help="Default: 256 on a GPU, 16 on the CPU.")
@click.option("--device", default="auto", show_default=True)
@click.option("--iterations", type=int, default=2, show_default=True, help="Timed iterations per paradigm.")
def main(preset, resolution, device, iterations):
    """Seconds per search iteration; prints JSON to stdout."""
    try:
        device = resolve_device(device)
    except ValueError as error:
        raise click.ClickException(str(error))
    gpu = device.type == "cuda"
    result = bench.run(preset or ("stylegan2" if gpu else "tiny"), resolution or (256 if gpu else 16), device,
                       iterations)
    click.echo(dump_json(result))


if __name__ == "__main__":
    sys.exit(main())
