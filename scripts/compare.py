"""Every searcher on the same data and budget, retrained and scored by one recipe, with a leaderboard. Same as `stylenas compare`."""
import sys

from stylenas.compare.commands import compare_command as main

if __name__ == "__main__":
    sys.exit(main())
