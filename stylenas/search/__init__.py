"""StyleGAN2 search space (supernet, mixed layers, W selection), genotypes, alphaGAN searcher."""
