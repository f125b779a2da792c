"""``stylenas import`` (also ``scripts/import_network.py``)."""

import click


@click.command("import")
@click.argument("src", type=click.Path(dir_okay=False))
@click.option("--out", required=True, type=click.Path(dir_okay=False), help="StyleNAS checkpoint to write (.pt).")
def import_command(src, out):
    """Convert an NVlabs stylegan2-ada-pytorch network pickle or a rosinality stylegan2-pytorch
    checkpoint into a StyleNAS checkpoint (G, D, G_ema of the stylegan2 genotype), running no code
    from SRC. The result loads with torch.load(weights_only=True) and works with generate, fid and
    train --init (which also take SRC directly)."""
    from pathlib import Path

    from ..checkpoint import save_checkpoint
    from . import ImportNetworkError, import_network

    if Path(out).resolve() == Path(src).resolve():
        raise click.ClickException(f"--out {out} is SRC itself; give another file")
    try:
        state = import_network(src)
        save_checkpoint(state, out)
    except ImportNetworkError as error:
        raise click.ClickException(str(error)) from None
    except OSError as error:
        raise click.ClickException(f"--out {out}: cannot write it ({error.strerror or error})") from None
    config, imported = state["config"], state["imported"]
    parts = ", ".join(name for name in ("G", "D", "G_ema") if name in state)
    click.echo(f"{src} ({imported['format']}): {config['resolution']} px stylegan2 genotype, z {config['z_dim']}, "
               f"channels min({config['channel_base']}/res, {config['channel_max']}); {parts} -> {out}")
