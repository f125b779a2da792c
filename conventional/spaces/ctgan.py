"""CT-GAN's CIFAR-10 critic (Wei et al., ICLR 2018), the discriminator DEGAS retrains its found
generators against (DEGAS section 3.2, "GAN training"; section 4 compares with CT-GAN as its
baseline). Read from the authors' ResNet code, biuyq/CT-GAN
``CT-GANs/tensorflow_generative_model/CT_gan_cifar_resnet.py`` (``ctgan.py:N`` below):

- WGAN-GP's residual critic: an optimised first block (conv, ReLU, conv + mean pool; shortcut mean
  pool + 1x1 conv), a down-sampling block and two plain blocks with identity shortcuts, DIM_D = 128
  (ctgan.py:44, 143-177). The block layout is SNGAN's ``DisBlock``; CT-GAN has no spectral norm and
  no normalisation in D (NORMALIZATION_D = False, ctgan.py:46);
- dropout after blocks 2, 3 and 4 only, keep probabilities 0.8, 0.5, 0.5 (ctgan.py:173-177, 226), so
  two passes of one batch differ (the consistency term, ``losses.consistency_term``); every pass of
  D in training has them: the Wasserstein term, the gradient penalty and G's loss (ctgan.py:226, 284, 321);
- ReLU, the mean over positions (``output2``, the D_ of the consistency term, ctgan.py:178-179), and a
  linear layer with a bias (ctgan.py:180);
- initialisation (tflib ``ops/conv2d.py`` lines 55-72, ``ops/linear.py`` lines 39-60): uniform weights of
  standard deviation sqrt(4 / (fan_in + fan_out)) for the 3x3 convolutions (``he_init``),
  sqrt(2 / (fan_in + fan_out)) for the 1x1 shortcuts (``he_init=False``, ctgan.py:131, 147) and for
  the output linear (Glorot), fan = channels x kernel^2; zero biases.
"""

from __future__ import annotations

import math

import torch.nn.functional as F
from torch import nn

from .discriminators import DisBlock

CTGAN_DROPOUT = (0.2, 0.5, 0.5)  # after blocks 2, 3, 4: keep 0.8, 0.5, 0.5 (ctgan.py:226)


class CTGANDiscriminator(nn.Module):
    """CT-GAN's critic; ``forward(x, features=True)`` also returns D_ (mean-pooled features)."""

    def __init__(self, df_dim=128, dropout=CTGAN_DROPOUT):
        super().__init__()
        self.blocks = nn.ModuleList([DisBlock(3, df_dim, True, first=True, sn=False),
                                     DisBlock(df_dim, df_dim, True, sn=False),
                                     DisBlock(df_dim, df_dim, False, sn=False),
                                     DisBlock(df_dim, df_dim, False, sn=False)])
        self.dropouts = nn.ModuleList(nn.Dropout(p) for p in dropout)  # after blocks 2..4
        self.l5 = nn.Linear(df_dim, 1)
        ctgan_init(self)

    def forward(self, x, features=False):
        h = self.blocks[0](x)
        for block, dropout in zip(self.blocks[1:], self.dropouts):
            h = dropout(block(h))
        pooled = F.relu(h).mean(dim=(2, 3))
        out = self.l5(pooled)
        return (out, pooled) if features else out


def tflib_stdev(module, he_init):
    """The standard deviation tflib draws ``module``'s uniform weights with."""
    if isinstance(module, nn.Linear):
        return math.sqrt(2.0 / (module.in_features + module.out_features))
    k = module.kernel_size[0] * module.kernel_size[1]
    fan_in, fan_out = module.in_channels * k, module.out_channels * k
    return math.sqrt((4.0 if he_init else 2.0) / (fan_in + fan_out))


def ctgan_init(D):
    """tflib's initialisation: uniform in +-sqrt(3) stdev, He-like for 3x3 convs, Glorot for the
    1x1 shortcuts and the linear; zero biases."""
    for m in D.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            he_init = isinstance(m, nn.Conv2d) and m.kernel_size != (1, 1)
            bound = math.sqrt(3.0) * tflib_stdev(m, he_init)
            nn.init.uniform_(m.weight, -bound, bound)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
    return D
