"""(G, D) of any conventional genotype: the family's generator (``conventional.spaces``) and the
fixed SNGAN/AutoGAN residual discriminator, or the family's own D (AGAN, DGGAN).

Built at gf 256 / df 128 the published genotypes have the parameter counts of their authors' code
(tests/test_conventional.py).
"""

from __future__ import annotations

from torch import nn

from .genotypes import load_genotype
from .spaces import agan_modules, alphagan_cells, autogan_cells, dggan_grown
from .spaces.ctgan import CTGANDiscriminator
from .spaces.degas_dag import DegasGenerator
from .spaces.discriminators import Discriminator


def init_weights(module):
    """AutoGAN's and alphaGAN's retraining initialisation (``--init_type xavier_uniform``):
    xavier-uniform weights of every Conv2d (transposed convs and linears keep PyTorch's
    default, as their ``classname.find("Conv2d")`` test), BN weights N(1, 0.02) and biases 0.
    Under spectral norm the raw weight ``weight_orig`` is the one initialised."""
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.xavier_uniform_(m.weight_orig if hasattr(m, "weight_orig") else m.weight)
        elif isinstance(m, nn.BatchNorm2d) and m.affine:
            nn.init.normal_(m.weight, 1.0, 0.02)
            nn.init.zeros_(m.bias)
    return module


def build_generator(genotype, resolution=32, gf_dim=256, latent_dim=128):
    genotype = load_genotype(genotype)
    space, body = genotype.search_space, genotype.body
    if space == "alphagan_conv":
        return alphagan_cells.build_generator(body, resolution, gf_dim, latent_dim)
    if space == "autogan":
        return autogan_cells.build_generator(body, resolution, gf_dim, latent_dim)
    if space == "degas":
        return DegasGenerator(genotype, resolution, gf_dim, latent_dim)
    if space == "dggan":
        return _grown(genotype, resolution)[0]
    if space == "agan":
        return agan_modules.AGANGenerator(body, resolution, gf_dim, latent_dim)
    raise ValueError(f"no generator for search space {space!r}")


def build_networks(genotype, resolution=32, gf_dim=256, df_dim=128, latent_dim=128, discriminator="sngan",
                   d_spectral_norm=True, init=True):
    """(G, D) of a genotype (a ConventionalGenotype, a published name or a genotype.json path).
    ``G(z)`` maps ``[N, latent_dim]`` to ``[N, 3, resolution, resolution]`` in [-1, 1]. A ``dggan``
    genotype fixes its own widths and latent size and brings its own ProgGAN D (equalised
    learning rate: ``init`` does not apply); an ``agan`` genotype brings its searched D
    (conventional/spaces/agan_modules.py). Otherwise D is SNGAN's residual discriminator, or with
    ``discriminator="ctgan"`` CT-GAN's critic (dropout, no spectral norm, its own initialisation:
    ``conventional.spaces.ctgan``), the one DEGAS retrains against."""
    genotype = load_genotype(genotype)
    if genotype.search_space == "dggan":
        return _grown(genotype, resolution)
    G = build_generator(genotype, resolution, gf_dim, latent_dim)
    if genotype.search_space == "agan":  # AGAN searched D too (its modules are in the genotype)
        D = agan_modules.AGANDiscriminator(genotype.body, df_dim, sn=d_spectral_norm)
    elif discriminator == "ctgan":
        D = CTGANDiscriminator(df_dim)
    else:
        D = Discriminator(df_dim, spectral_norm=d_spectral_norm)
    if init:
        init_weights(G)
        if not isinstance(D, CTGANDiscriminator):  # CT-GAN's critic initialises itself (tflib's scheme)
            init_weights(D)
    return G, D


def _grown(genotype, resolution):
    grown = dggan_grown.stage_resolutions(genotype.body)[-1]
    if grown != resolution:
        raise ValueError(f"the dggan genotype was grown to {grown}px, not {resolution}px (train it on {grown}px data)")
    return dggan_grown.build_grown(genotype)


def count_parameters(module):
    return sum(p.numel() for p in module.parameters())
