"""StyleGAN2 layers, mapping and synthesis networks, discriminator (built from a genotype)."""
