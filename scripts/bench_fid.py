"""Benchmark the Frechet distance (ours vs pytorch-fid's scipy sqrtm vs torchmetrics; batched vs looped) as JSON. Same as `stylenas bench-fid`."""
import sys

from stylenas.metrics.commands import bench_fid_command as main

if __name__ == "__main__":
    sys.exit(main())
