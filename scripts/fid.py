"""FID (and IS, KID) between image folders, LMDBs and .npz statistics, with pytorch-fid's protocol.

    python scripts/fid.py A B [--num N] [--batch 50] [--device cpu|cuda] [--workers 4]
                          [--inception PATH] [--save-stats OUT.npz] [--is] [--kid] [--json]
"""
import json
import sys

import click

from stylenas.metrics.cli import FIDError, evaluate, format_text


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("a", type=click.Path())
@click.argument("b", type=click.Path(), required=False)
@click.option("--num", type=int, help="Use the first N images of each image input (default: all).")
@click.option("--batch", default=50, show_default=True, help="Images per Inception batch.")
@click.option("--device", default="auto", show_default=True, help="cpu, cuda, cuda:N or auto.")
@click.option("--workers", default=4, show_default=True, help="Data-loading worker processes.")
@click.option("--inception", type=click.Path(), help="pt_inception-2015-12-05-6726825d.pth (else "
              "$STYLENAS_INCEPTION, the torch hub cache, or a download).")
@click.option("--save-stats", "save_stats", type=click.Path(dir_okay=False), help="Write A's mu and sigma here (.npz).")
@click.option("--is", "want_is", is_flag=True, help="Also the Inception Score of A (10 splits).")
@click.option("--kid", "want_kid", is_flag=True, help="Also the Kernel Inception Distance of A and B.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object instead of text.")
def main(a, b, num, batch, device, workers, inception, save_stats, want_is, want_kid, as_json):
    """FID between A and B; each an image folder (recursive), an .lmdb or an .npz (mu, sigma)
    (generator checkpoints: not supported yet, they come with the retraining issue).

    With only A and --save-stats, computes and saves A's statistics. The last line is
    `FID: <value>`; progress goes to stderr.
    """
    try:
        result = evaluate(a, b, num=num, batch=batch, device=device, workers=workers, inception=inception,
                          save_stats_path=save_stats, want_is=want_is, want_kid=want_kid)
    except FIDError as e:
        raise click.ClickException(str(e)) from None
    if as_json:
        click.echo(json.dumps(result))
    else:
        for line in format_text(result):
            click.echo(line)


if __name__ == "__main__":
    sys.exit(main())
