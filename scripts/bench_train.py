"""Seconds per kimg of a full StyleGAN2 training step, ours vs NVlabs stylegan2-ada-pytorch. Same as `stylenas bench-train`."""
import sys

from stylenas.train.commands import bench_train_command as main

if __name__ == "__main__":
    sys.exit(main())
