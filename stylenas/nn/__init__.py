"""StyleGAN2 layers, mapping and synthesis networks, discriminator (built from a genotype)."""

from .layers import NORMAL_OPS, UP_OPS, EqualConv2d, EqualLinear, MinibatchStd, SynthesisLayer, ToRGB
from .networks import (NUM_WS, Discriminator, Generator, MappingNetwork, SynthesisNetwork, block_resolutions,
                       synthesis_layout)

__all__ = ["NORMAL_OPS", "UP_OPS", "NUM_WS", "EqualConv2d", "EqualLinear", "MinibatchStd", "SynthesisLayer",
           "ToRGB", "Discriminator", "Generator", "MappingNetwork", "SynthesisNetwork", "block_resolutions",
           "synthesis_layout"]
