"""Small file helpers shared by the package: every output is written atomically, with the mode the
user's umask gives a new file (``mkstemp`` alone would leave it 0600, unreadable by colleagues)."""

from __future__ import annotations

import json
import os
import tempfile
import threading
from contextlib import contextmanager
from pathlib import Path

_umask_lock = threading.Lock()


def current_umask():
    """The process umask. Read from /proc where the kernel reports it (setting and restoring it
    would briefly give other threads' new files mode 0666); else set-and-restore under a lock."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    with _umask_lock:
        mask = os.umask(0o022)
        os.umask(mask)
    return mask


def file_mode():
    """Mode of a new regular file under the current umask (0644 under umask 022)."""
    return 0o666 & ~current_umask()


def folder_mode():
    """Mode of a new folder under the current umask (0755 under umask 022)."""
    return 0o777 & ~current_umask()


@contextmanager
def atomic_path(path, suffix=".tmp"):
    """Yield a temporary path beside ``path``; it replaces ``path`` when the block succeeds and
    is removed when it fails, so readers never see a half-written file. The file gets the mode
    the umask gives new files; its name is ``.<name>.<random><suffix>`` (what
    ``stylenas.runs.remove_stale_temporaries`` clears after a killed run)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix, dir=path.parent)
    try:
        os.fchmod(fd, file_mode())
    finally:
        os.close(fd)
    try:
        yield Path(tmp)
        if Path(tmp).exists():  # the writer may have replaced the file (e.g. torch.save): set it again
            os.chmod(tmp, file_mode())
        os.replace(tmp, path)
    except OSError as error:
        Path(tmp).unlink(missing_ok=True)
        if error.filename is None:  # e.g. a write through a file object: say which file it was
            raise OSError(error.errno, error.strerror or str(error), str(path)) from error
        raise
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def save_torch(obj, path, suffix=".tmp"):
    """``torch.save`` atomically, through a Python file object: a full disk or another write
    failure is then an ``OSError`` naming ``path`` (torch's own writer turns it into an opaque
    RuntimeError such as "unexpected pos 576 vs 534")."""
    import torch

    try:
        with atomic_path(path, suffix=suffix) as tmp, open(tmp, "wb") as file:
            torch.save(obj, file)
    except RuntimeError as error:  # torch's zip writer masks a failed write with its own error at close
        cause = error.__context__
        while cause is not None and not isinstance(cause, OSError):
            cause = cause.__context__
        if cause is None:
            raise
        raise OSError(cause.errno, cause.strerror or str(cause), str(path)) from error


def dump_json(obj, out=None):
    """JSON text of ``obj`` (indented); also written to ``out`` when given."""
    text = json.dumps(obj, indent=2)
    if out:
        with atomic_path(out) as tmp:
            tmp.write_text(text + "\n")
    return text
