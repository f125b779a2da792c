class DatasetError(ValueError):
    """Bad data or options: a missing or malformed LMDB, an empty image source, an existing output.
    The message names the path and what was expected; scripts print it as one ``Error:`` line."""
