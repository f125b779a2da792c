"""The alphas of a small DEGAS search under both readings of the paper's learning rate (docs/conventional.md).

Rerun: python scripts/degas_lr_readings.py [--steps 40] [--size 16]  (CPU, about a minute)
Prints a markdown table: per reading and step, the strongest softmax weight of an edge, averaged over the
edges and the largest; 1 / (number of ops) is uniform, 1 saturated.
"""
import sys

import click
import torch


@click.command()
@click.option("--steps", type=click.IntRange(1), default=40, show_default=True, help="Alternating search steps.")
@click.option("--size", type=click.IntRange(8), default=16, show_default=True, help="Image size (random images).")
@click.option("--images", type=click.IntRange(16), default=64, show_default=True, help="Number of images.")
@click.option("--batch", type=click.IntRange(1), default=8, show_default=True)
@click.option("--seed", default=0, show_default=True)
def main(steps, size, images, batch, seed):
    from stylenas.conventional.searchers.degas import DEGAS_LR, LR_READINGS, alpha_trajectories

    gen = torch.Generator().manual_seed(seed)
    data = [torch.randint(0, 256, (3, size, size), dtype=torch.uint8, generator=gen) for _ in range(images)]
    record_at = sorted({1, 5, 10, 20, steps} & set(range(1, steps + 1)))
    result = alpha_trajectories(data, steps, record_at, batch=batch, seed=seed)
    click.echo("| reading | weights lr | alphas lr | " + " | ".join(f"step {s}" for s in record_at) + " |")
    click.echo("|---|---|---|" + "---|" * len(record_at))
    for reading, rows in result.items():
        lr, arch_lr = LR_READINGS[reading](DEGAS_LR["cifar"])
        cells = " | ".join(f"{r['mean_max']:.3f} / {r['max_max']:.3f}" for r in rows)
        click.echo(f"| {reading} | {lr:g} | {arch_lr:g} | {cells} |")


if __name__ == "__main__":
    sys.exit(main())
