"""Images from a training checkpoint (seeds, truncation, grids, style mixing). Same as `stylenas generate`."""
import sys

from stylenas.train.commands import generate_command as main

if __name__ == "__main__":
    sys.exit(main())
