"""Conventional-GAN searchers on small images (installed as ``stylenas.conventional``).

AutoGAN, AGAN, DEGAS, alphaGAN on AutoGAN cells and DGGAN land here with their issues.
"""
