"""The ``stylenas`` command (also ``python -m stylenas``): one subcommand per script.

Subcommands are imported only when run, so ``stylenas --help`` and ``stylenas fid --help`` stay
quick. Each lives in its package's ``commands`` module; ``scripts/*.py`` import the same objects.
"""
import importlib

import click

# name -> "module:attribute" of a click command; the help line is the command's own.
COMMANDS = {
    "prepare-data": "stylenas.datasets.commands:prepare_data_command",
    "make-demo-data": "stylenas.datasets.commands:make_demo_data_command",
    "fid": "stylenas.metrics.commands:fid_command",
    "search": "stylenas.search.commands:search_command",
    "train": "stylenas.train.commands:train_command",
    "generate": "stylenas.train.commands:generate_command",
    "import": "stylenas.train.imports.commands:import_command",
    "ops": "stylenas.ops.__main__:main",
    "bench-ops": "stylenas.ops.commands:bench_ops_command",
    "bench-fid": "stylenas.metrics.commands:bench_fid_command",
    "bench-search": "stylenas.search.commands:bench_search_command",
    "bench-train": "stylenas.train.commands:bench_train_command",
    "bench-data": "stylenas.datasets.commands:bench_data_command",
    "train-conventional": "stylenas.conventional.commands:train_conventional_command",
    "search-conventional": "stylenas.conventional.commands:search_conventional_command",
    "bench-conventional": "stylenas.conventional.commands:bench_conventional_command",
    "degas-lr-readings": "stylenas.conventional.commands:degas_lr_readings_command",
    "compare": "stylenas.compare.commands:compare_command",
    "gpu-check": "stylenas.gpucheck:gpu_check_command",
}


def load_command(name):
    module, attribute = COMMANDS[name].split(":")
    return getattr(importlib.import_module(module), attribute)


class LazyGroup(click.Group):
    def list_commands(self, ctx):
        return list(COMMANDS)

    def get_command(self, ctx, name):
        return load_command(name) if name in COMMANDS else None


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="stylenas")
def main():
    """StyleNAS: GAN architecture search (alphaGAN on StyleGAN2, conventional GAN searchers), with
    CUDA ops, LMDB data and FID/IS metrics. `stylenas COMMAND --help` for each command."""
