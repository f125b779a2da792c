"""Folder or .zip of images -> LMDB (rosinality's stylegan2-pytorch layout plus our metadata). Same as `stylenas prepare-data`."""
import sys

from stylenas.datasets.commands import prepare_data_command as main

if __name__ == "__main__":
    sys.exit(main())
