"""The LMDB layout of rosinality's stylegan2-pytorch, plus our metadata key.

    b"length"          -> number of images, ascii int
    b"{size}-{i:05d}"  -> encoded image (JPEG or PNG) of image i at size x size
    b"stylenas-meta"   -> JSON: sizes, count, format, quality, filter, source, version (ours only)

Writing goes to a hidden temporary sibling folder, ``.<name>.tmp-XXXX``, that is renamed into place
on success, so a failed or interrupted run never leaves a half-written output. A writer that is
killed outright (SIGKILL, out of memory, power loss) cannot remove that folder; the next writer into
the same output finds it by the lock file the dead writer held, says so and removes it. Reading
opens each file once per process.
"""
import errno
import glob
import json
import os
import shutil
import sys
import tempfile
import threading
from pathlib import Path

try:
    import fcntl
except ImportError:  # Windows has no flock: leftovers are then reported, never removed
    fcntl = None

import lmdb

from ..io import folder_mode
from ..runs import RunFolder, forget_lock_fd, hold_lock_fd
from .errors import DatasetError

LENGTH_KEY = b"length"
META_KEY = b"stylenas-meta"
META_VERSION = 1
LAYOUT = "expected an LMDB in rosinality's layout: b'length' plus images under '<size>-<index:05d>'"


def record_key(size, index):
    return f"{size}-{index:05d}".encode()


WRITER_LOCK = "writer.lock"  # inside a temporary folder, locked (flock) by its writer while it lives


def temp_prefix(path):
    """Name prefix of the temporary folders of writers into ``path``."""
    return f".{Path(path).name}.tmp-"


def _disk_usage(folder):
    total = 0
    for root, _, files in os.walk(folder):
        for name in files:
            try:
                total += os.lstat(os.path.join(root, name)).st_blocks * 512  # data.mdb may be sparse
            except OSError:
                pass
    return total


def _human(size):
    for unit in ("bytes", "kB", "MB", "GB"):
        if size < 1000 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "bytes" else f"{size:.1f} {unit}"
        size /= 1000


def _writer_is_alive(folder):
    """False when nobody holds ``folder``'s writer lock (its writer died: the kernel drops a flock
    when its process ends, however it ends); True while a writer holds it; None when it cannot be
    told (no lock file, or no flock on this system)."""
    if fcntl is None:
        return None
    try:
        fd = os.open(folder / WRITER_LOCK, os.O_RDWR)
    except FileNotFoundError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)  # also releases the lock just taken
    return False


def remove_stale_temporaries(path, log=None):
    """Remove the temporary folders that writers into ``path`` left behind when they were killed
    before finishing; returns the removed folders. Folders of a writer that is still running are
    left alone, and so are folders without a writer lock (written by an older version, or by a
    writer in the instant between creating and locking it): those are only reported."""
    path = Path(path)
    log = log or (lambda line: print(line, file=sys.stderr))
    if not path.parent.is_dir():
        return []
    removed = []
    for folder in sorted(path.parent.glob(glob.escape(temp_prefix(path)) + "*")):
        if not folder.is_dir() or folder.is_symlink():
            continue
        alive = _writer_is_alive(folder)
        if alive:
            continue
        size = _human(_disk_usage(folder))
        if alive is None:
            log(f"{path}: found {folder.name} ({size}), a temporary folder without a writer lock; if no "
                f"other run is writing {path.name}, it is a leftover of an interrupted run: delete it by hand")
            continue
        shutil.rmtree(folder, ignore_errors=True)
        log(f"{path}: removed {folder.name} ({size}), the temporary folder of an earlier run into "
            f"{path.name} that was killed before it finished")
        removed.append(folder)
    return removed


def _is_lmdb_dir(path):
    """A folder holding nothing but LMDB files: safe to replace with --force."""
    names = set(os.listdir(path))
    return "data.mdb" in names and names <= {"data.mdb", "lock.mdb"}


class LMDBWriter:
    """Write images into a new LMDB at ``path``; ``close()`` moves it into place, ``abort()`` (also
    on any exception inside ``with``) deletes the temporary folder. Opening one first removes the
    temporary folders that killed writers into ``path`` left (``remove_stale_temporaries``; ``log``
    receives the line saying so, default stderr). Use::

        with LMDBWriter(out, sizes) as w:
            for images in ...:
                w.add({256: jpeg_bytes, 1024: ...})
            w.close(meta)
    """

    def __init__(self, path, sizes, force=False, commit_bytes=64 << 20, map_size=1 << 30, log=None):
        self.path, self.sizes, self.force = Path(path), sorted(sizes), force
        # one writer per output at a time: a second one fails at once, naming the first
        self.owner = RunFolder(self.path, lock_path=self.path.parent / f".{self.path.name}.lock",
                               log=log, remove_lock=True).acquire()
        try:
            self.removed = remove_stale_temporaries(self.path, log)
            self._open(map_size)
        except BaseException:
            self.owner.release()
            raise
        self.count, self.pending, self.pending_bytes, self.commit_bytes = 0, [], 0, commit_bytes

    def _open(self, map_size):
        self.check_target()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.tmp = Path(tempfile.mkdtemp(prefix=temp_prefix(self.path), dir=self.path.parent))
        self.env = self.lock_fd = None
        try:
            self._lock()
            os.chmod(self.tmp, folder_mode())  # mkdtemp's private 0700 would stick to the output
            self.env = lmdb.open(str(self.tmp), map_size=map_size, readahead=False, meminit=False)
        except BaseException:
            self.abort()
            raise

    def _lock(self):
        """Hold a flock on the temporary folder's lock file for as long as this process lives. The
        file gets its final name only once locked, so another writer never sees it unlocked."""
        if fcntl is None:
            return
        staging = self.tmp / f"{WRITER_LOCK}.new"
        self.lock_fd = os.open(staging, os.O_RDWR | os.O_CREAT, 0o644)
        hold_lock_fd(self.lock_fd)
        fcntl.flock(self.lock_fd, fcntl.LOCK_EX)
        os.replace(staging, self.tmp / WRITER_LOCK)

    def _unlock(self):
        if self.lock_fd is not None:
            forget_lock_fd(self.lock_fd)
            os.close(self.lock_fd)
            self.lock_fd = None

    def check_target(self):
        if not (self.path.exists() or self.path.is_symlink()):
            return
        if not self.force:
            raise DatasetError(f"{self.path}: already exists (use --force to replace it)")
        if not self.path.is_dir() or not _is_lmdb_dir(self.path):
            raise DatasetError(f"{self.path}: exists and is not an LMDB folder; refusing to replace it")

    def add(self, images):
        """Store one image given as {size: encoded bytes}; returns its index."""
        if sorted(images) != self.sizes:
            raise ValueError(f"expected images at sizes {self.sizes}, got {sorted(images)}")
        self.pending += [(record_key(size, self.count), data) for size, data in images.items()]
        self.pending_bytes += sum(len(data) for data in images.values())
        self.count += 1
        if self.pending_bytes >= self.commit_bytes:  # bounded memory, few fsyncs
            self._commit()
        return self.count - 1

    def _commit(self):
        # The map starts small and doubles when full: a 1 TiB map (rosinality) is a real
        # allocation on filesystems without sparse files.
        while True:
            try:
                with self.env.begin(write=True) as txn:
                    for key, value in self.pending:
                        txn.put(key, value)
                break
            except lmdb.MapFullError:
                self.env.set_mapsize(self.env.info()["map_size"] * 2)
            except lmdb.Error as error:
                raise self._write_error(error) from None
        self.pending, self.pending_bytes = [], 0

    def _write_error(self, error):
        """An OSError naming the output for a failed LMDB write: LMDB reports a full disk as an I/O
        error (or ENOSPC) without the file, which the command would show as a traceback."""
        try:
            free = shutil.disk_usage(self.tmp).free
        except OSError:
            free = None
        if "No space" in str(error) or (free is not None and free < self.pending_bytes + (8 << 20)):
            return OSError(errno.ENOSPC, f"No space left on device (LMDB: {error}); nothing was written",
                           str(self.path))
        return OSError(errno.EIO, f"LMDB write failed ({error}); nothing was written", str(self.path))

    def close(self, meta=None):
        """Write ``length`` and the metadata, then move the LMDB to its final path."""
        meta = {"version": META_VERSION, "sizes": self.sizes, "count": self.count, **(meta or {})}
        self.pending += [(LENGTH_KEY, str(self.count).encode()), (META_KEY, json.dumps(meta).encode())]
        self._commit()
        self.env.sync(True)
        self.env.close()
        self.env = None
        self.check_target()  # it may have appeared meanwhile
        if self.lock_fd is not None:  # the output holds LMDB files only; the fd keeps the lock until renamed
            os.unlink(self.tmp / WRITER_LOCK)
        old = None
        if self.path.exists():  # --force: swap, then delete the old one
            old = Path(tempfile.mkdtemp(prefix=f".{self.path.name}.old-", dir=self.path.parent))
            os.replace(self.path, old / "lmdb")
        try:
            os.replace(self.tmp, self.path)
        except BaseException:
            if old is not None:  # put the old one back
                os.replace(old / "lmdb", self.path)
                shutil.rmtree(old, ignore_errors=True)
            raise
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
        self.tmp = None
        self._unlock()
        self.owner.release()
        return self.path

    def abort(self):
        if self.env is not None:
            self.env.close()
            self.env = None
        if self.tmp is not None:
            shutil.rmtree(self.tmp, ignore_errors=True)
            self.tmp = None
        self._unlock()
        self.owner.release()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.abort()  # a no-op after close()


# One environment per file and process: py-lmdb refuses to open a file twice in one process, and
# an environment must not be used across fork(). Keyed by the data file's inode, so a file that
# was replaced (prepare --force) is opened afresh.
_ENVS = {}
_OPEN_LOCK = threading.Lock()


def _data_file(path):
    path = Path(path)
    if not (path.exists() or path.is_symlink()):
        raise DatasetError(f"{path}: no such file or directory ({LAYOUT})")
    data = path / "data.mdb" if path.is_dir() else path
    if not data.is_file():
        raise DatasetError(f"{path}: not an LMDB, no data.mdb inside ({LAYOUT})")
    return data


def open_env(path):
    """The read-only environment of the LMDB at ``path`` for this process (opened on first use)."""
    data = _data_file(path)
    st = data.stat()
    key = (st.st_dev, st.st_ino)
    entry = _ENVS.get(key)
    if entry is not None and entry[0] == os.getpid():
        return entry[1]
    with _OPEN_LOCK:  # two threads must not both open it: the second open would be refused
        entry = _ENVS.get(key)
        if entry is not None and entry[0] == os.getpid():
            return entry[1]
        if entry is not None:  # inherited through fork(): close our copy, open our own
            try:
                entry[1].close()
            except lmdb.Error:
                pass
        try:
            env = lmdb.open(str(path), subdir=Path(path).is_dir(), readonly=True, lock=False,
                            readahead=False, meminit=False, max_readers=512)
        except lmdb.InvalidError:
            raise DatasetError(f"{path}: not an LMDB, {data.name} is not an LMDB file ({LAYOUT})") from None
        except lmdb.Error as error:
            raise DatasetError(f"{path}: cannot open the LMDB: {error}") from None
        _ENVS[key] = (os.getpid(), env)
        return env


def close_env(path):
    """Close this process's environment of ``path`` (datasets on it reopen it when next read)."""
    for key, (pid, env) in list(_ENVS.items()):
        if pid == os.getpid() and Path(env.path()).resolve() == Path(path).resolve():
            env.close()
            del _ENVS[key]


def probe_sizes(txn):
    """Sizes stored in a file without our metadata: jump from one '<size>-' key prefix to the
    next (one seek per size, not a scan of every key)."""
    sizes, cursor = [], txn.cursor()
    found = cursor.set_range(b"0")
    while found:
        key = cursor.key()
        if not key[:1].isdigit():  # 'length', 'stylenas-meta' sort after every image key
            break
        prefix, dash, _ = key.partition(b"-")
        if dash and prefix.isdigit():
            if txn.get(record_key(int(prefix), 0)) is not None:
                sizes.append(int(prefix))
            found = cursor.set_range(prefix + b"-\xff")  # past every '<prefix>-<digits>' key
        else:
            found = cursor.set_range(key + b"\x00")
    return sorted(sizes)


def describe(path):
    """(length, sizes, meta) of an LMDB; meta is {} for files written by rosinality's tool."""
    env = open_env(path)
    with env.begin() as txn:
        length = txn.get(LENGTH_KEY)
        if length is None:
            raise DatasetError(f"{path}: LMDB has no 'length' key ({LAYOUT})")
        try:
            length = int(bytes(length).decode("ascii"))
        except ValueError:
            raise DatasetError(f"{path}: 'length' is {bytes(length)[:20]!r}, expected an ascii integer") from None
        meta = txn.get(META_KEY)
        try:
            meta = json.loads(bytes(meta)) if meta is not None else {}
        except ValueError:
            raise DatasetError(f"{path}: '{META_KEY.decode()}' is not valid JSON") from None
        sizes = meta.get("sizes") or probe_sizes(txn)
    if not sizes:
        raise DatasetError(f"{path}: LMDB holds no images under '<size>-00000' keys ({LAYOUT})")
    return length, sorted(sizes), meta
