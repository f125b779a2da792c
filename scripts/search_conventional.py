"""Search a conventional generator (alphaGAN on AutoGAN cells, DEGAS). Same as `stylenas search-conventional`."""
import sys

from stylenas.conventional.commands import search_conventional_command as main

if __name__ == "__main__":
    sys.exit(main())
