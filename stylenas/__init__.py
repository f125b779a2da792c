"""StyleNAS: GAN architecture search on StyleGAN2 and conventional GANs.

Sub-packages: ``ops`` (custom ops with CUDA kernels), ``nn``, ``search``, ``train``,
``metrics``, ``datasets`` (LMDB data) and ``conventional`` (small-image searchers).
Importing ``stylenas`` itself is cheap: it imports neither torch nor the sub-packages.
"""

__version__ = "0.1.0"
