"""StyleGAN2 search space (supernet, mixed layers, W selection), genotypes, alphaGAN searcher."""

from .alphagan import PRESETS, AdversarialLoss, AlphaGANSearcher, Preset
from .genotype import Genotype, GenotypeError, load_genotype, space_size
from .published import PUBLISHED_NAMES
from .supernet import MixedSynthesisLayer, SuperGenerator, SuperSynthesisNetwork

__all__ = ["PRESETS", "PUBLISHED_NAMES", "AdversarialLoss", "AlphaGANSearcher", "Preset", "Genotype", "GenotypeError",
           "load_genotype", "MixedSynthesisLayer", "SuperGenerator", "SuperSynthesisNetwork", "space_size"]
