"""An NVlabs network pickle or a rosinality checkpoint to a StyleNAS checkpoint, running no code from it. Same as `stylenas import`."""
import sys

from stylenas.train.imports.commands import import_command as main

if __name__ == "__main__":
    sys.exit(main())
