"""The architectures the alphaGAN paper published for StyleGAN2 (Tian et al., Table 9: alphaGAN (s),
"micro + dynamic {W_i}"), as named genotypes a user can retrain without searching.

``TABLE_9`` transcribes the table row by row. Its columns are *input* resolutions r (4x4 ... R x R):

- "normal W" at column r is the latent of the normal conv of block r (``b{r}.conv1``), whose
  input is r x r; the last column holds two entries, "W_a, W_b*": W_a for that conv and the
  starred W_b for the last toRGB (``b{R}.torgb``, the paper's tRGB_(m+1), Fig. 1).
- "up W" at column r is the latent of the up-sampling conv whose input is r x r, i.e. the first
  conv of the next block (``b{2r}.conv0``); the last column has none ("-").
- Every other toRGB (``b{r}.torgb``, r < R) reads the latent of ``b{2r}.conv0``: the paper's
  Fig. 1 (tRGB_k receives L_k's latent) and StyleGAN2's own w layout (``torgb_w="tied"``).
- "micro": one normal operation and one up-sampling operation for every block.

docs/genotypes.md spells the reading out with the table; tests/test_published_genotypes.py checks
that, built at config-f widths, each has Table 8's generator size.
"""

from __future__ import annotations

from ..nn.networks import block_resolutions, synthesis_layout
from .genotype import STYLEGAN2_CHANNELS, Genotype

# name -> (dataset, resolution, normal op, up op, normal W per input resolution 4..R,
#          starred W of the last toRGB, up W per input resolution 4..R/2)
TABLE_9 = {
    "alphagan_celeba128": dict(dataset="CelebA", resolution=128, normal_op="conv_3x3", up_op="nearest_conv",
                               normal_w=[2, 4, 1, 1, 1, 8], last_torgb_w=5, up_w=[3, 1, 4, 6, 3]),
    "alphagan_church256": dict(dataset="LSUN church", resolution=256, normal_op="conv_5x5", up_op="bilinear_conv",
                               normal_w=[7, 8, 8, 1, 1, 2, 4], last_torgb_w=3, up_w=[6, 4, 4, 2, 4, 2]),
    # Table 10 (the same architecture, FFHQ's "micro + dynamic" row) prints bilinear_conv as the up
    # operation; Table 9, which this genotype transcribes, prints nearest_conv. Both are a 3x3 conv
    # after a fixed interpolation, so the parameter count cannot tell them apart (docs/genotypes.md).
    "alphagan_ffhq1024": dict(dataset="FFHQ", resolution=1024, normal_op="conv_5x5", up_op="nearest_conv",
                              normal_w=[3, 7, 4, 3, 4, 3, 2, 4, 4], last_torgb_w=2,
                              up_w=[3, 6, 8, 6, 6, 8, 3, 6]),
}

# Table 8, "alphaGAN (s) + micro + dynamic {W_i}", searched and retrained on the same data:
# the generator's size in millions of parameters as printed (two decimals).
TABLE_8_MILLIONS = {"alphagan_celeba128": 29.33, "alphagan_church256": 52.32, "alphagan_ffhq1024": 52.73}

PUBLISHED_NAMES = tuple(TABLE_9)


def table9_genotype(name):
    """The Genotype of a Table 9 row (config-f channels, the widths the paper retrains at)."""
    row = TABLE_9[name]
    resolution = row["resolution"]
    blocks = block_resolutions(resolution)
    if len(row["normal_w"]) != len(blocks) or len(row["up_w"]) != len(blocks) - 1:
        raise AssertionError(f"{name}: Table 9 row does not fit {resolution} px")  # a transcription slip
    normal_w = dict(zip(blocks, row["normal_w"]))
    up_w = dict(zip(blocks[1:], row["up_w"]))  # input r -> the conv0 of block 2r
    layers = []
    for layer_name, kind in synthesis_layout(resolution):
        res = int(layer_name.split(".")[0][1:])
        if kind == "normal":
            layers.append({"name": layer_name, "op": row["normal_op"], "w": normal_w[res]})
        elif kind == "up":
            layers.append({"name": layer_name, "op": row["up_op"], "w": up_w[res]})
        else:  # tied: the next block's up conv's latent; the last toRGB its starred own
            layers.append({"name": layer_name, "w": row["last_torgb_w"] if res == resolution else up_w[res * 2]})
    source = {"paper": "alphaGAN (Tian et al., arXiv:2006.09134v2), Table 9", "dataset": row["dataset"],
              "table8_generator_millions": TABLE_8_MILLIONS[name]}
    return Genotype(resolution, layers, paradigm="micro+dynamic_w", channels=dict(STYLEGAN2_CHANNELS),
                    source=source, torgb_w="tied").validate(name)
