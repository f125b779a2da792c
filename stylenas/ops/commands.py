"""``stylenas bench-ops`` (also ``scripts/bench_ops.py``); ``stylenas ops build|check`` is
``python -m stylenas.ops``."""
import click

from ..io import dump_json
from . import bench


@click.command("bench-ops")
@click.option("--device", default="auto", show_default=True, help="cuda, cpu or auto.")
@click.option("--quick/--full", default=None, help="Small shapes (default on CPU) or StyleGAN2-sized ones.")
@click.option("--repeats", default=5, show_default=True, help="Timed repetitions per case (median).")
@click.option("--nvlabs", "nvlabs_path", type=click.Path(exists=True, file_okay=False),
              help="A stylegan2-ada-pytorch checkout to time its plugin beside ours (GPU only).")
@click.option("--out", type=click.Path(dir_okay=False), help="Also write the JSON here.")
def bench_ops_command(device, quick, repeats, nvlabs_path, out):
    """Forward+backward time of every op on StyleGAN2-sized shapes, PyTorch reference vs CUDA kernel
    (vs NVlabs' plugin), and of the discriminator before and after conv2d_resample's 1x1 fast path;
    prints JSON to stdout."""
    result = bench.run(device=device, quick=quick, repeats=repeats, nvlabs_path=nvlabs_path,
                       log=lambda line: click.echo(line, err=True))
    click.echo(dump_json(result, out))
