"""StyleGAN2 search space (supernet, mixed layers, W selection), genotypes, alphaGAN searcher."""

from .alphagan import PRESETS, AdversarialLoss, AlphaGANSearcher, Preset
from .genotype import Genotype, GenotypeError, space_size
from .supernet import MixedSynthesisLayer, SuperGenerator, SuperSynthesisNetwork

__all__ = ["PRESETS", "AdversarialLoss", "AlphaGANSearcher", "Preset", "Genotype", "GenotypeError",
           "MixedSynthesisLayer", "SuperGenerator", "SuperSynthesisNetwork", "space_size"]
