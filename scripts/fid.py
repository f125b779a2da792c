"""FID (and IS, KID) between image folders, LMDBs and .npz statistics, with pytorch-fid's protocol. Same as `stylenas fid`."""
import sys

from stylenas.metrics.commands import fid_command as main

if __name__ == "__main__":
    sys.exit(main())
