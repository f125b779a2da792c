"""Benchmark the custom ops: PyTorch reference vs CUDA kernel (vs NVlabs' plugin), as JSON. Same as `stylenas bench-ops`."""
import sys

from stylenas.ops.commands import bench_ops_command as main

if __name__ == "__main__":
    sys.exit(main())
