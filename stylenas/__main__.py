"""``python -m stylenas`` is the ``stylenas`` command."""
from .cli import main

if __name__ == "__main__":
    main(prog_name="stylenas")
