"""Write deterministic synthetic demo images (shaded shapes on textured backgrounds) to an LMDB. Same as `stylenas make-demo-data`."""
import sys

from stylenas.datasets.commands import make_demo_data_command as main

if __name__ == "__main__":
    sys.exit(main())
