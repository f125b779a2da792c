"""Benchmark the LMDB data path: our reader vs a rosinality-style reader, and prepare_data, as JSON. Same as `stylenas bench-data`."""
import sys

from stylenas.datasets.commands import bench_data_command as main

if __name__ == "__main__":
    sys.exit(main())
