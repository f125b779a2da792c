"""Search a StyleGAN2 generator architecture with alphaGAN: writes OUTDIR/genotype.json. Same as `stylenas search`."""
import sys

from stylenas.search.commands import search_command as main

if __name__ == "__main__":
    sys.exit(main())
