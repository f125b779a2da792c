"""Retrain a conventional genotype (AutoGAN/alphaGAN/DEGAS, CIFAR-10/STL-10). Same as `stylenas train-conventional`."""
import sys

from stylenas.conventional.commands import train_conventional_command as main

if __name__ == "__main__":
    sys.exit(main())
