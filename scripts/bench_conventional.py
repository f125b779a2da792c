"""Seconds per conventional search iteration and retraining step. Same as `stylenas bench-conventional`."""
import sys

from stylenas.conventional.commands import bench_conventional_command as main

if __name__ == "__main__":
    sys.exit(main())
