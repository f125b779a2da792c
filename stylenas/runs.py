"""What every command that writes a run folder shares (DESIGN.md, Conventions):

- ``RunFolder(outdir)``: an exclusive ``flock`` on ``OUTDIR/.lock`` for the command's whole life,
  so a second run into the same folder fails at once, naming the folder and the running process
  (the lock file holds its pid and command line). Under the lock, the temporary files that a
  killed run left (``.<name>.<random>.tmp`` of ``stylenas.io.atomic_path``) are removed. The
  kernel drops the lock when the process ends, however it ends; a forked worker does not keep it.
- ``StopSignals()``: SIGINT / SIGTERM (what SLURM sends before it kills a job) set a flag that the
  run checks at step boundaries; it then writes a checkpoint and raises ``Interrupted``, which the
  command turns into the resume hint and exit status 130 / 143. A second signal stops at once.
- ``RunCommand``: the click command class of every ``stylenas`` command, the one error boundary:
  an ``OSError`` becomes one line ``Error: <path>: <reason>`` (a full disk says so and names the
  complete checkpoint kept), ``Interrupted`` its message and 128 + the signal number.
- ``ProgressLine``: off a terminal (a SLURM log) a plain line every ``STYLENAS_PROGRESS_SECONDS``
  (30 s) with count, rate and ETA, where a terminal gets a bar.
- ``die_with_parent()``: worker initialiser: a worker process is killed when its parent dies.
"""

from __future__ import annotations

import errno
import math
import os
import shlex
import signal
import sys
import threading
import time
from pathlib import Path

import click

try:
    import fcntl
except ImportError:  # no flock (Windows): runs are then not locked
    fcntl = None

LOCK_FILE = ".lock"
# The complete resume files a run folder can hold, newest kind first; named when the disk fills.
STATE_FILES = ("checkpoint.pt", "search-state.pt")

# Lock fds of this process (run folders, LMDB writers). A forked child (a prepare-data worker) closes its
# copies, so a child that outlives its killed parent does not keep the dead run's lock held.
_LOCK_FDS = set()
_active = []  # RunFolders held by this process, innermost last (the error boundary asks them)
_released = []  # the ones released while the current command ran (an error passes their release)


def _close_inherited_locks():
    for fd in _LOCK_FDS:
        try:
            os.close(fd)
        except OSError:
            pass
    _LOCK_FDS.clear()
    _active.clear()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_close_inherited_locks)


def hold_lock_fd(fd):
    """Count ``fd`` among the locks a forked child closes."""
    _LOCK_FDS.add(fd)


def forget_lock_fd(fd):
    _LOCK_FDS.discard(fd)


class RunError(RuntimeError):
    """A run that cannot start (its folder is busy); the message is one line for the user."""


class Interrupted(Exception):
    """A run stopped by a signal after writing its checkpoint; ``exit_code`` is 128 + the signal."""

    def __init__(self, signum, message):
        super().__init__(message)
        self.signum = signum
        self.exit_code = 128 + signum


def command_line(resume=False):
    """The command line that started this process, as a user would type it again (``--resume``
    added when asked): ``stylenas train ...``, ``python -m stylenas ...`` or ``python scripts/x.py``."""
    argv = list(sys.argv)
    first = Path(argv[0]) if argv else Path("stylenas")
    if first.name == "__main__.py":
        head = ["python", "-m", first.parent.name]
    elif first.suffix == ".py":
        head = ["python", str(argv[0])]
    else:
        head = [first.name]
    rest = argv[1:]
    if resume and "--resume" not in rest:
        rest.append("--resume")
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:  # under torchrun: the same launcher again
        head = ["torchrun", "--nproc_per_node", os.environ.get("LOCAL_WORLD_SIZE", os.environ["WORLD_SIZE"]),
                *head[1:]] if head[0] == "python" else ["torchrun", "--nproc_per_node",
                                                        os.environ.get("LOCAL_WORLD_SIZE", "N"), *head]
    return " ".join(shlex.quote(part) for part in head + rest)


def stale_temporaries(folder):
    """Temporary files of ``atomic_path`` under ``folder`` (``.<name>.<random>.tmp``, also
    ``.pt.tmp``): only a killed writer leaves them, so under the run lock they are garbage."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.rglob(".*.tmp") if p.is_file() and not p.is_symlink())


def remove_stale_temporaries(folder, log):
    found = stale_temporaries(folder)
    if not found:
        return []
    size = 0
    for path in found:
        try:
            size += path.stat().st_size
            path.unlink()
        except FileNotFoundError:
            pass
    log(f"{folder}: removed {len(found)} temporary file(s) ({size / 1e6:.1f} MB) left by an earlier run that "
        f"was killed while writing: {', '.join(p.name for p in found[:3])}{' ...' if len(found) > 3 else ''}")
    return found


class RunFolder:
    """Exclusive ownership of a run folder (see the module docstring). ``acquire()`` creates the
    folder (the options must have been checked before: a refused run leaves nothing), takes the
    lock or raises ``RunError``, then clears stale temporaries; ``release()`` (or ``with``) ends it.
    ``enabled=False`` (the non-main processes of a torchrun launch) makes both do nothing."""

    def __init__(self, outdir, enabled=True, log=None, lock_path=None, remove_lock=False):
        self.path = Path(outdir)
        self.lock_path = Path(lock_path) if lock_path else self.path / LOCK_FILE
        self.enabled, self.fd, self.removed, self.remove_lock = enabled, None, [], remove_lock
        self.log = log or (lambda line: click.echo(line, err=True))

    def acquire(self):
        if not self.enabled or self.fd is not None:
            return self
        self.created = not self.path.exists()
        while True:
            self.lock_path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o666)
            if fcntl is None:
                break
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = os.pread(fd, 4096, 0).decode(errors="replace").strip() or "a process that did not say"
                os.close(fd)
                raise RunError(f"{self.path}: another run is writing this folder ({holder}); wait for it to end, "
                               f"stop it, or give another output folder") from None
            try:  # a lock file removed by its last owner meanwhile locks nothing: take the new one
                if os.stat(self.lock_path).st_ino == os.fstat(fd).st_ino:
                    break
            except FileNotFoundError:
                pass
            os.close(fd)
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"pid {os.getpid()}: {command_line()}\n".encode(), 0)
        self.fd = fd
        _LOCK_FDS.add(fd)
        _active.append(self)
        self.removed = remove_stale_temporaries(self.path, self.log)
        return self

    def release(self):
        if self.fd is None:
            return
        _LOCK_FDS.discard(self.fd)
        if self in _active:
            _active.remove(self)
            _released.append(self)
        try:
            if self.remove_lock:  # removed while still locked: a newcomer checks it locked the live file
                os.unlink(self.lock_path)
            else:
                os.ftruncate(self.fd, 0)  # the folder is free again: no stale pid in it
        except OSError:
            pass
        if self.created and self.lock_path.parent == self.path:  # a run refused before it wrote anything
            try:  # leaves no folder behind (still locked: a newcomer sees its lock file gone and retries)
                if [p.name for p in self.path.iterdir()] == [LOCK_FILE]:
                    self.lock_path.unlink()
                    self.path.rmdir()
            except OSError:
                pass
        os.close(self.fd)  # closing drops the flock
        self.fd = None

    def kept(self):
        """The complete resume files in the folder (newest first), for the message of a full disk."""
        found = [self.path / name for name in STATE_FILES if (self.path / name).is_file()]
        return sorted(found, key=lambda p: p.stat().st_mtime, reverse=True)

    def __enter__(self):
        return self.acquire()

    def __exit__(self, *exc):
        self.release()


def is_out_of_space(error):
    return isinstance(error, OSError) and error.errno in (errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC))


def describe_os_error(error):
    """One line for an OSError: ``<path>: <reason>`` (both paths of a rename); a full disk also says
    what was kept."""
    reason = error.strerror or str(error)
    paths = [str(p) for p in (error.filename, error.filename2) if p is not None]
    line = f"{' -> '.join(paths)}: {reason}" if paths else reason
    if is_out_of_space(error):
        kept = [p for folder in _active + _released[::-1] for p in folder.kept()]
        line += " (the disk is full"
        line += (f"; the last complete checkpoint {kept[0]} is kept: free some space and rerun with --resume)"
                 if kept else "; nothing of this run can be resumed: free some space and run it again)")
    return line


class RunCommand(click.Command):
    """The error boundary of every ``stylenas`` command (and of ``scripts/*.py``, which run the same
    command objects): ``OSError`` -> ``Error: <path>: <reason>``; ``RunError`` -> its line;
    ``Interrupted`` -> its message and exit 128 + signal; a second Ctrl-C -> exit 130 at once."""

    def invoke(self, ctx):
        _released.clear()
        try:
            return super().invoke(ctx)
        except Interrupted as stop:
            click.echo(str(stop), err=True)
            ctx.exit(stop.exit_code)
        except KeyboardInterrupt:
            click.echo("Interrupted: stopped at once, without a checkpoint of the work since the last one", err=True)
            ctx.exit(130)
        except RunError as error:
            raise click.ClickException(str(error)) from None
        except OSError as error:
            raise click.ClickException(describe_os_error(error)) from None


class StopSignals:
    """``with StopSignals() as stop``: SIGINT and SIGTERM set ``stop.signum`` (the run finishes its
    step, checkpoints, then calls ``stop.interrupt(...)``); a second one raises KeyboardInterrupt at
    once. Outside the main thread (signals cannot be caught there) it does nothing."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self, log=None):
        self.signum, self.previous = None, {}
        self.log = log or (lambda line: click.echo(line, err=True))

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            for signum in self.SIGNALS:
                self.previous[signum] = signal.signal(signum, self._handle)
        return self

    def __exit__(self, *exc):
        for signum, handler in self.previous.items():
            signal.signal(signum, handler)
        self.previous = {}

    def _handle(self, signum, frame):
        if self.signum is not None:
            if signum == signal.SIGINT:  # Ctrl-C again: the user does not want to wait
                raise KeyboardInterrupt
            return  # e.g. torchrun passing on the SIGTERM after the terminal's SIGINT: already stopping
        self.signum = signum
        self.log(f"{signal.Signals(signum).name} received: finishing the current step and writing a checkpoint "
                 f"(Ctrl-C again to stop at once, without it)")

    SYNC_EVERY = 4  # under torch.distributed the processes agree every 4th call (one small all-reduce)

    def requested(self, dist=None):
        """Whether to stop now; under torch.distributed every process agrees (any one asked), at every
        ``SYNC_EVERY``-th call, which all processes make at the same steps."""
        if dist is not None and getattr(dist, "active", False):
            import torch

            self.calls = getattr(self, "calls", 0) + 1
            if self.calls % self.SYNC_EVERY:
                return False
            flag = torch.tensor([0.0 if self.signum is None else float(self.signum)], device=dist.device)
            torch.distributed.all_reduce(flag, op=torch.distributed.ReduceOp.MAX)
            if flag.item() and self.signum is None:
                self.signum = int(flag.item())
        return self.signum is not None

    def interrupt(self, saved):
        """Raise ``Interrupted`` after the run wrote ``saved`` (its resume file)."""
        name = signal.Signals(self.signum).name
        raise Interrupted(self.signum, f"stopped by {name}; {saved} holds the run so far. Resume with:\n  "
                                       f"{command_line(resume=True)}")


def progress_seconds():
    """Seconds between plain progress lines off a terminal (STYLENAS_PROGRESS_SECONDS, default 30)."""
    try:
        return max(0.0, float(os.environ.get("STYLENAS_PROGRESS_SECONDS", "30")))
    except ValueError:
        return 30.0


def on_terminal(stream=None):
    stream = stream or sys.stderr
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


class ProgressLine:
    """Progress of a loop of ``total`` items: a click bar on a terminal; elsewhere one plain line
    (``label: done/total (pct) rate/s elapsed ETA``) every ``progress_seconds()`` and at the end.
    ``with ProgressLine(total, label) as bar: bar.update(n, note)``."""

    def __init__(self, total, label, unit="items", file=None, start=0):
        self.total, self.label, self.unit, self.start = total, label, unit, start
        self.file = file or sys.stderr
        self.tty = on_terminal(self.file)
        self.done, self.note, self.bar, self.emitted = start, None, None, 0

    def __enter__(self):
        if self.tty:
            self.bar = click.progressbar(length=max(self.total - self.start, 0), label=self.label, file=self.file,
                                         item_show_func=lambda item: item)
            self.bar.__enter__()
        elif self.total > self.start:
            click.echo(self.label, file=self.file)  # what a bar shows off a terminal: the loop has begun
        self.t0 = self.last = time.perf_counter()
        return self

    def update(self, n=1, note=None):
        self.done += n
        self.note = note
        if self.bar is not None:
            self.bar.update(n, current_item=note)
        elif time.perf_counter() - self.last >= progress_seconds():
            self.emit()

    def line(self):
        elapsed = time.perf_counter() - self.t0
        rate = (self.done - self.start) / elapsed if elapsed > 0 else 0.0
        eta = (self.total - self.done) / rate if rate > 0 else math.inf
        from .train.runlog import format_seconds

        text = (f"{self.label}: {self.done}/{self.total} {self.unit} ({100 * self.done / max(self.total, 1):.0f}%), "
                f"{rate:.3g} {self.unit}/s, elapsed {format_seconds(elapsed)}, "
                f"ETA {format_seconds(eta) if math.isfinite(eta) else '?'}")
        return text + (f", {self.note}" if self.note else "")

    def emit(self):
        click.echo(self.line(), file=self.file)
        self.last = time.perf_counter()
        self.emitted, self.emitted_at = self.emitted + 1, self.done

    def __exit__(self, *exc):
        if self.bar is not None:
            self.bar.__exit__(*exc)
        elif exc[0] is None and self.emitted and self.emitted_at != self.done:  # a short loop needs no line
            self.emit()


def die_with_parent(parent=None):
    """In a worker process: be killed (SIGKILL) when the parent dies, however it dies (Linux
    prctl PR_SET_PDEATHSIG), and exit at once if it is already gone. Call it first in a worker
    initialiser; ``parent`` is the pid that started the worker (default: the current parent)."""
    parent = os.getppid() if parent is None else parent
    if sys.platform.startswith("linux"):
        import ctypes

        try:
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(1, signal.SIGKILL, 0, 0, 0)  # PR_SET_PDEATHSIG = 1
        except (OSError, AttributeError):
            pass
    if os.getppid() != parent:  # the parent died before prctl took effect
        os._exit(1)


def is_main_process():
    """Rank 0 of a torchrun launch, or a process on its own: the one that owns the run folder."""
    return int(os.environ.get("RANK", "0") or 0) == 0


def restarted_by_torchrun():
    """True in a worker that torchrun started again after a process of its group failed
    (``--max-restarts``)."""
    try:
        return int(os.environ.get("TORCHELASTIC_RESTART_COUNT", "0")) > 0
    except ValueError:
        return False


def resuming(resume, state_path):
    """Whether a run continues from ``state_path``: ``--resume`` was given, or torchrun restarted the
    group after a failure (the command line is the first one) and the failed attempt left the state."""
    return bool(resume) or (restarted_by_torchrun() and Path(state_path).is_file())
