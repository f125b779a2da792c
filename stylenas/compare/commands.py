"""``stylenas compare`` (also ``scripts/compare.py``)."""
import click

from ..runs import RunCommand
from .budgets import BUDGETS
from .families import FAMILIES, CompareError


def _seeds(text):
    try:
        return [int(s) for s in text.split(",") if s.strip()]
    except ValueError:
        raise click.BadParameter(f"expected comma-separated integers such as 0,1,2, got {text!r}",
                                 param_hint="--seeds") from None


@click.command("compare", cls=RunCommand, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--data", required=True, type=click.Path(), help="LMDB of images (prepare-data).")
@click.option("--outdir", required=True, type=click.Path(file_okay=False), help="Compare folder.")
@click.option("--methods", default=None, help="Comma list of searchers and 'random' (random search in each listed "
              "searcher's space) [default: the family's: all its searchers and random].")
@click.option("--seeds", default="0,1,2", show_default=True, help="Comma list of seeds (one run per method and seed).")
@click.option("--budget", type=click.Choice(list(BUDGETS)), default="tiny", show_default=True,
              help="Search budget, retraining recipe and sample counts (docs/compare.md).")
@click.option("--family", type=click.Choice(list(FAMILIES)), default="conventional", show_default=True,
              help="Which searchers: the conventional GANs (AutoGAN, AGAN, DEGAS, alphaGAN, DGGAN on CIFAR-10 / "
                   "STL-10) or alphaGAN on the StyleGAN2 space.")
@click.option("--published", default=None, help="Comma list of the published genotypes that are rows, or 'none' "
              "[default: every one the family has at the data's resolution].")
@click.option("--resolution", type=int, default=None, help="Which size of the LMDB [default: the largest].")
@click.option("--resume", is_flag=True, help="Continue the compare in OUTDIR (finished jobs are kept).")
@click.option("--device", default="auto", show_default=True, help="cuda, cuda:N, cpu or auto (torchrun: per process).")
@click.option("--inception", type=click.Path(dir_okay=False), default=None, help="FID Inception weights file.")
@click.option("--proxy", is_flag=True, help="Without the weights file: score every row on PROXY features (a seeded "
              "random-weight Inception; every output is labelled proxy; not comparable to published FID).")
def compare_command(data, outdir, methods, seeds, budget, family, published, resolution, resume, device, inception,
                    proxy):
    """Every searcher on the same data and budget, its genotype retrained and scored by one recipe:
    writes OUTDIR/leaderboard.{md,csv,json,png}. Under `torchrun --nproc_per_node N` the N processes
    share the jobs."""
    from .run import compare

    method_list = [m.strip() for m in methods.split(",") if m.strip()] if methods else None
    published_list = None if published is None else [
        name.strip() for name in published.split(",") if name.strip() and name.strip() != "none"]
    try:
        rows = compare(data, outdir, methods=method_list, seeds=_seeds(seeds), budget=budget, family=family,
                       resume=resume, device=device, inception=inception, resolution=resolution,
                       published=published_list, proxy=proxy)
    except CompareError as error:
        raise click.ClickException(str(error)) from None
    if rows is not None:
        from pathlib import Path

        click.echo((Path(outdir) / "leaderboard.md").read_text())
