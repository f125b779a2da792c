"""The alphas of a small DEGAS search under both readings of the paper's learning rate (docs/conventional.md). Same as `stylenas degas-lr-readings`."""
import sys

from stylenas.conventional.commands import degas_lr_readings_command as main

if __name__ == "__main__":
    sys.exit(main())
