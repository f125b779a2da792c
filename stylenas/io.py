"""Small file helpers shared by the package: every output is written atomically."""

from __future__ import annotations

import json
import os
import tempfile
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def atomic_path(path, suffix=".tmp"):
    """Yield a temporary path beside ``path``; it replaces ``path`` when the block succeeds and
    is removed when it fails, so readers never see a half-written file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix, dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def dump_json(obj, out=None):
    """JSON text of ``obj`` (indented); also written to ``out`` when given."""
    text = json.dumps(obj, indent=2)
    if out:
        with atomic_path(out) as tmp:
            tmp.write_text(text + "\n")
    return text
