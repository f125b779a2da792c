"""Benchmark alphaGAN search iterations (all four paradigms) against plain StyleGAN2 steps; JSON. Same as `stylenas bench-search`."""
import sys

from stylenas.search.commands import bench_search_command as main

if __name__ == "__main__":
    sys.exit(main())
