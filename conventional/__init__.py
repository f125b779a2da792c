"""Conventional-GAN searchers on small images (installed as ``stylenas.conventional``).

CIFAR-10 (32 px) and STL-10 (48 px) generators built from genotypes: the published AutoGAN-A/B/C
and alphaGAN (l)/(s), and those the searchers find (AutoGAN, AGAN, alphaGAN on AutoGAN-style
cells, DEGAS, DGGAN); the fixed SNGAN/AutoGAN discriminator; the retraining loop (``train``;
``generator_from_checkpoint`` is the hook of ``stylenas.train.checkpoint.load_generator``).

Layers, each importing only those below it: ``commands`` and ``bench`` -> ``searchers`` (one
module per method) -> ``train``, ``rewards``, ``controller``, ``spread`` -> ``networks`` ->
``spaces`` (one module per network family) -> ``genotypes``, ``ops``, ``losses``.
"""
from . import spaces  # noqa: F401 - registers the network families with genotypes (SPACES, PUBLISHED)
from .genotypes import PUBLISHED, ConventionalGenotype, load_genotype
from .networks import Discriminator, build_generator, build_networks, count_parameters
from .spaces.autogan_cells import autogan_code, autogan_from_code
from .train import generator_from_checkpoint

__all__ = ["PUBLISHED", "ConventionalGenotype", "Discriminator", "autogan_code", "autogan_from_code",
           "build_generator", "build_networks", "count_parameters", "generator_from_checkpoint", "load_genotype"]
