"""Conventional-GAN searchers on small images (installed as ``stylenas.conventional``).

CIFAR-10 (32 px) and STL-10 (48 px) generators built from genotypes: the published AutoGAN-A/B/C
and alphaGAN (l)/(s), and those found by alphaGAN on AutoGAN-style cells (``alphagan_space``)
and DEGAS (``degas``); the fixed SNGAN/AutoGAN discriminator; the retraining loop (``train``;
``generator_from_checkpoint`` is the hook of ``stylenas.train.checkpoint.load_generator``).
"""
from .genotypes import PUBLISHED, ConventionalGenotype, autogan_code, autogan_from_code, load_genotype
from .networks import Discriminator, build_generator, build_networks, count_parameters
from .train import generator_from_checkpoint

__all__ = ["PUBLISHED", "ConventionalGenotype", "Discriminator", "autogan_code", "autogan_from_code",
           "build_generator", "build_networks", "count_parameters", "generator_from_checkpoint", "load_genotype"]
