"""Retrain a genotype (or the original StyleGAN2) with StyleGAN2's recipe; exact resume, torchrun for many GPUs. Same as `stylenas train`."""
import sys

from stylenas.train.commands import train_command as main

if __name__ == "__main__":
    sys.exit(main())
