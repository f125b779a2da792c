"""``python -m stylenas.ops build`` compiles the CUDA extension now (nvcc is enough, no GPU
needed); ``python -m stylenas.ops check`` runs every kernel's self-check on the GPU
(``--emulated``: on the CPU through the host emulation of the kernels; ``--auto``: whichever of
the two this machine can, else one line saying why the kernels were not checked)."""

import sys

import click
import torch

from . import extension


@click.group("ops")
def main():
    """Build and check the StyleNAS CUDA extension."""


@main.command()
@click.option("--verbose", is_flag=True, help="Show the compiler commands and output.")
def build(verbose):
    """Compile csrc/ (or find it in the cache) and import it."""
    try:
        module = extension.build(verbose=verbose)
    except extension.BuildError as error:
        raise click.ClickException(f"CUDA extension build failed: {error}")
    folder = extension.cache_root() / extension.cache_key()
    click.echo(f"built {module.__name__} for CUDA architectures {extension.arch_list()} in {folder}")


@main.command()
@click.option("--emulated", is_flag=True,
              help="No GPU needed: run the kernels on the CPU through their host emulation (csrc/emulation.h).")
@click.option("--auto", "auto_device", is_flag=True,
              help="On the GPU if there is one, else through the host emulation; where the CUDA toolkit they "
                   "need is missing, print one line saying so and exit 0 (the ops then use their references).")
def check(emulated, auto_device):
    """Compare every CUDA op with its reference on the current GPU and print a table."""
    if emulated and auto_device:
        raise click.UsageError("--emulated and --auto exclude each other")
    if auto_device:
        emulated = not torch.cuda.is_available()
        problem = extension.toolkit_problem(emulate=emulated)
        if problem:
            what = "no CUDA GPU, and the host emulation cannot be built" if emulated else \
                "the CUDA extension cannot be built"
            click.echo(f"kernels not checked: {what}: {problem}; the ops use their PyTorch references")
            return
    if not emulated and not torch.cuda.is_available():
        raise click.ClickException("no CUDA GPU visible: the kernels cannot run here (try --emulated)")
    try:
        extension.activate_emulation() if emulated else extension.build()
    except extension.BuildError as error:
        raise click.ClickException(f"CUDA extension build failed: {error}")
    if emulated:
        device = torch.device("cpu")
        click.echo("device: host emulation of the kernels on the CPU")
    else:
        device = torch.device("cuda", torch.cuda.current_device())
        click.echo(f"device: {torch.cuda.get_device_name(device)}")
    click.echo(f"{'op':<20}{'result':<8}{'max rel. error':>16}{'tolerance':>12}")
    failed = 0
    for op, (_, tolerance) in sorted(extension._self_checks.items()):
        ok, error = extension.run_self_check(op, device)
        failed += not ok
        shown = f"{error:.2e}" if isinstance(error, float) else str(error)
        click.echo(f"{op:<20}{'ok' if ok else 'FAIL':<8}{shown:>16}{tolerance:>12.0e}")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
