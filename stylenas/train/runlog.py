"""What a training run writes besides checkpoints: log.jsonl, progress, snapshots, grids, plots.

API (only rank 0 should construct writers; every writer is atomic or flushed line by line):
- ``RunLog(path, resume_at=None, key="kimg")``: appends one JSON object per ``write(record)`` and
  flushes it. With ``resume_at`` the lines whose ``key`` is beyond it (written after the
  checkpoint a run resumes from) are dropped first. ``records()`` reads the file back.
- NVlabs-style tick outputs: ``TickStats`` (per-step values -> raw moments), ``stats_record``
  (one ``stats.jsonl`` line: ``{"Loss/G/loss": {"num", "mean", "std"}, ..., "timestamp"}``, names in
  ``NVLABS_KEYS``), ``metric_record`` (one ``metric-<name>.jsonl`` line), ``Console`` (prints and
  tees into ``log.txt``), ``open_tensorboard`` (a SummaryWriter, or None without ``tensorboard``).
  ``RunLog``'s ``key`` may be a function of the record (``stats_kimg``).
- ``Progress(total, unit="kimg", start=0)``: ``line(done, **fields)`` -> one terminal line with
  rate and ETA; ``format_seconds``.
- ``snapshot_name(kimg)``: ``network-snapshot-000012.pt`` (NVlabs' naming); fractional kimg keeps its
  decimals (``network-snapshot-000000.25.pt``) so snapshots never overwrite each other.
- ``save_image_grid(images, path, nrow)``: float images in [-1, 1] (or uint8) -> one PNG grid.
- ``to_uint8(images)``: [-1, 1] -> uint8 with round-to-nearest (as FID and PNG files see them).
- ``plot_series(records, keys, path, x_key="kimg")``: one matplotlib panel per logged value (e.g.
  losses) against ``x_key``, raw and EMA-smoothed; returns the Figure (None when nothing to draw).
- ``KeepBest(path, metric, mode="min")``: ``update(value, state)`` saves ``state`` as the best
  checkpoint when ``value`` improves, and remembers the best across resumes (``state_dict``).
"""

from __future__ import annotations

import json
import math
import os
import time
from pathlib import Path

import torch
import torchvision

from ..plots import plot_series, save_image_atomic  # plot_series is re-exported for the trainers


class RunLog:
    def __init__(self, path, resume_at=None, key="kimg"):
        self.path, self.key = Path(path), key
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if resume_at is not None and self.path.is_file():
            kept = []
            for line in self.path.read_text().splitlines():
                value = _key_value(_parse(line), key)
                if value is not None and value <= resume_at + 1e-9:
                    kept.append(line)
            self.path.write_text("".join(line + "\n" for line in kept))
        elif resume_at is None and self.path.exists():
            self.path.unlink()
        self.file = open(self.path, "a")

    def write(self, record):
        self.file.write(json.dumps(record) + "\n")
        self.file.flush()

    def records(self):
        return [_parse(line) for line in self.path.read_text().splitlines() if line.strip()]

    def close(self):
        self.file.close()


def _parse(line):
    try:
        return json.loads(line)
    except json.JSONDecodeError:  # a line cut by a kill: drop it
        return {}


def _key_value(record, key):
    """``record[key]``, or ``key(record)`` for a callable key; None where the record lacks it."""
    try:
        value = key(record) if callable(key) else record[key]
    except (KeyError, TypeError):
        return None
    return value if isinstance(value, (int, float)) else None


# ------------------------------------------------------------------------------ NVlabs-style tick stats

# Our per-step statistics under stylegan2-ada-pytorch's stats.jsonl names (training/loss.py,
# training_loop.py); those NVlabs has no name for keep ours under "Stats/".
NVLABS_KEYS = {
    "loss_G": "Loss/G/loss", "loss_D": "Loss/D/loss", "r1_penalty": "Loss/r1_penalty",
    "pl_penalty": "Loss/pl_penalty", "score_real": "Loss/scores/real", "score_fake": "Loss/scores/fake",
    "signs_real": "Loss/signs/real", "signs_fake": "Loss/signs/fake", "augment_p": "Progress/augment",
}


def nvlabs_key(name):
    return NVLABS_KEYS.get(name, f"Stats/{name}")


class TickStats:
    """Accumulates every value reported in a step as the three raw moments (count, sum, sum of
    squares) of its elements, on the device (no host sync per step), as NVlabs' training_stats does.
    ``add(name, value)`` takes a tensor (every element counts: per-sample scores give their spread)
    or a number. ``collect(dist)`` sums the moments over processes and returns them as
    ``{name: [num, sum, sum_sq]}``, starting a new interval; ``means(dist)`` does the same but returns
    the means (the trainer's own accumulator's interface)."""

    def __init__(self):
        self.moments = {}

    def add(self, name, value):
        if torch.is_tensor(value):
            value = value.detach().float().flatten()
        else:
            value = torch.tensor([float(value)])
        moments = torch.stack([value.new_tensor(float(value.numel())), value.sum(), value.square().sum()])
        self.moments[name] = self.moments[name] + moments if name in self.moments else moments

    def collect(self, dist):
        names = sorted(self.moments)
        if not names:
            return {}
        stacked = torch.stack([self.moments[n].to(dist.device) for n in names])
        dist.all_reduce_mean(stacked)
        self.moments = {}
        return {name: [round(row[0] * dist.world_size), row[1] * dist.world_size, row[2] * dist.world_size]
                for name, row in zip(names, stacked.double().tolist())}

    def means(self, dist):
        return {name: m[1] / m[0] for name, m in self.collect(dist).items()}


def merge_moments(total, moments):
    """Add ``moments`` (``TickStats.collect``) into ``total`` in place; returns ``total``."""
    for name, (num, first, second) in moments.items():
        old = total.get(name, [0, 0.0, 0.0])
        total[name] = [old[0] + num, old[1] + first, old[2] + second]
    return total


def summarise(num, first, second):
    """NVlabs' ``{"num", "mean", "std"}`` of raw moments (std: population, 0 for one value, NaN for none)."""
    if num == 0:
        return {"num": 0, "mean": math.nan, "std": math.nan}
    mean = first / num
    if not math.isfinite(first):
        std = math.nan
    elif num == 1:
        std = 0.0
    else:
        std = math.sqrt(max(second / num - mean * mean, 0.0))
    return {"num": int(num), "mean": mean, "std": std}


def stats_record(moments, scalars, timestamp=None):
    """One stats.jsonl line in stylegan2-ada-pytorch's layout: ``{key: {"num", "mean", "std"}, ...,
    "timestamp": t}``. ``moments`` are per-step statistics under our names (``TickStats.collect``),
    ``scalars`` values reported once per tick under NVlabs' names (``Progress/kimg``, ``Timing/...``)."""
    record = {nvlabs_key(name): summarise(*m) for name, m in moments.items()}
    record.update({key: summarise(1, float(value), float(value) ** 2) for key, value in scalars.items()})
    record = dict(sorted(record.items()))  # NVlabs' collector lists its names sorted too
    record["timestamp"] = time.time() if timestamp is None else timestamp
    return record


def stats_kimg(record):
    """The kimg of a stats.jsonl record (the truncation key of ``RunLog`` on resume)."""
    return record["Progress/kimg"]["mean"]


def metric_record(metric, value, seconds, num_gpus, snapshot, kimg, extra=None):
    """One line of ``metric-<metric>.jsonl`` in NVlabs' layout (metrics/metric_main.py
    ``report_metric``), plus ``kimg`` (the key that drops lines past a resumed checkpoint)."""
    return {"results": {metric: value}, "metric": metric, "total_time": seconds,
            "total_time_str": format_seconds(seconds), "num_gpus": num_gpus, "snapshot_pkl": snapshot,
            "timestamp": time.time(), "kimg": kimg, **(extra or {})}


class Console:
    """The run's console: ``say(line)`` prints it and, once ``open(path)`` is called, appends it
    to ``log.txt``; lines said before are kept and written first (so the file starts at the
    command's first line)."""

    def __init__(self, echo):
        self.echo, self.file, self.pending = echo, None, []

    def open(self, path, append):
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        self.file = open(path, "a" if append else "w")
        for line in self.pending:
            self.file.write(line + "\n")
        self.file.flush()
        self.pending = []

    def __call__(self, line):
        self.echo(line)
        if self.file is None:
            self.pending.append(line)
        else:
            self.file.write(line + "\n")
            self.file.flush()

    def record(self, line):
        """Write ``line`` into log.txt only (e.g. the error the command itself prints)."""
        if self.file is not None:
            self.file.write(line + "\n")
            self.file.flush()

    def close(self):
        if self.file is not None:
            self.file.close()
            self.file = None


def open_tensorboard(logdir, purge_step=None):
    """A ``torch.utils.tensorboard.SummaryWriter`` on ``logdir``, or None when the ``tensorboard``
    package is not installed (it is an optional extra: nothing is written then)."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        return None
    return SummaryWriter(str(logdir), purge_step=purge_step)


class TickOutputs:
    """Rank 0's per-tick and per-metric files of a training run in ``outdir``: ``stats.jsonl``,
    ``metric-<name>.jsonl`` and, with the ``tensorboard`` package, TensorBoard event files (step: the
    number of real images shown). ``resume_kimg`` (a resumed run) drops the lines written after that
    checkpoint; a fresh run (None) starts these files anew."""

    def __init__(self, outdir, resume_kimg=None, tensorboard=True):
        self.outdir, self.resume_kimg = Path(outdir), resume_kimg
        self.stats = RunLog(self.outdir / "stats.jsonl", resume_at=resume_kimg, key=stats_kimg)
        self.metrics = {}
        for path in self.outdir.glob("metric-*.jsonl"):  # truncated (resume) or removed (fresh run)
            RunLog(path, resume_at=resume_kimg).close()
        purge = None if resume_kimg is None else int(round(resume_kimg * 1000)) + 1
        self.events = open_tensorboard(self.outdir, purge_step=purge) if tensorboard else None
        self.t0 = time.time()

    def tick(self, record, nimg):
        self.stats.write(record)
        if self.events is not None:
            for key, value in record.items():
                if isinstance(value, dict):
                    self.events.add_scalar(key, value["mean"], global_step=nimg, walltime=record["timestamp"])
            self.events.flush()

    def metric(self, record, nimg):
        name = record["metric"]
        if name not in self.metrics:
            self.metrics[name] = RunLog(self.outdir / f"metric-{name}.jsonl", resume_at=math.inf)
        self.metrics[name].write(record)
        if self.events is not None:
            for key, value in record["results"].items():
                self.events.add_scalar(f"Metrics/{key}", value, global_step=nimg, walltime=record["timestamp"])
            self.events.flush()

    def close(self):
        self.stats.close()
        for log in self.metrics.values():
            log.close()
        if self.events is not None:
            self.events.close()


def tick_line(record):
    """The console line of a stats.jsonl record, NVlabs' fields first, then the losses."""
    def value(key):
        return record[key]["mean"] if key in record else None

    fields = [f"tick {int(value('Progress/tick')):<5d}", f"kimg {value('Progress/kimg'):<8.3f}",
              f"time {format_seconds(value('Timing/total_sec')):<12s}",
              f"sec/tick {value('Timing/sec_per_tick'):<7.1f}", f"sec/kimg {value('Timing/sec_per_kimg'):<7.2f}",
              f"maintenance {value('Timing/maintenance_sec'):<6.1f}", f"cpumem {value('Resources/cpu_mem_gb'):<6.2f}"]
    if value("Resources/peak_gpu_mem_gb") is not None:
        fields.append(f"gpumem {value('Resources/peak_gpu_mem_gb'):<6.2f}")
    if value("Progress/augment") is not None:
        fields.append(f"augment {value('Progress/augment'):.3f}")
    for label, key in (("loss/G", "Loss/G/loss"), ("loss/D", "Loss/D/loss"), ("r1", "Loss/r1_penalty"),
                       ("pl", "Loss/pl_penalty")):
        if value(key) is not None:
            fields.append(f"{label} {value(key):.4g}")
    return " ".join(fields)


def tick_series(records):
    """stats.jsonl records as flat ``{"kimg": .., name: mean}`` dicts under our names (the input of
    ``plot_series``)."""
    ours = {key: name for name, key in NVLABS_KEYS.items()}
    flat = []
    for record in records:
        if _key_value(record, stats_kimg) is None:
            continue
        row = {"kimg": stats_kimg(record)}
        for key, value in record.items():
            if isinstance(value, dict) and "mean" in value:
                row[ours.get(key, key[len("Stats/"):] if key.startswith("Stats/") else key)] = value["mean"]
        flat.append(row)
    return flat


def cpu_memory_gb():
    """This process's resident memory (NVlabs' ``Resources/cpu_mem_gb``); the peak where /proc is absent."""
    try:
        pages = int(Path("/proc/self/statm").read_text().split()[1])
        return pages * os.sysconf("SC_PAGE_SIZE") / 2 ** 30
    except (OSError, ValueError, IndexError):
        import resource

        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2 ** 20  # KiB on Linux


def format_seconds(seconds):
    seconds = max(0, int(round(seconds)))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m {seconds % 60:02d}s"
    return f"{seconds // 3600}h {seconds // 60 % 60:02d}m"


class Progress:
    """Rate and ETA of a loop measured in ``unit`` (from ``start``, e.g. the resumed kimg)."""

    def __init__(self, total, unit="kimg", start=0.0):
        self.total, self.unit, self.start = total, unit, start
        self.t0 = time.perf_counter()

    def line(self, done, **fields):
        elapsed = time.perf_counter() - self.t0
        rate = (done - self.start) / elapsed if elapsed > 0 else 0.0
        eta = (self.total - done) / rate if rate > 0 else math.inf
        extra = " ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}" for k, v in fields.items())
        eta_text = format_seconds(eta) if math.isfinite(eta) else "?"
        return (f"{self.unit} {done:.3f}/{self.total:g} ({100 * done / max(self.total, 1e-12):.0f}%) "
                f"elapsed {format_seconds(elapsed)} ETA {eta_text} {extra}").rstrip()


def snapshot_name(kimg):
    whole = int(math.floor(kimg + 1e-9))
    frac = kimg - whole
    if abs(frac) < 1e-9:
        return f"network-snapshot-{whole:06d}.pt"
    decimals = f"{frac:.6f}"[1:].rstrip("0")  # ".25"
    return f"network-snapshot-{whole:06d}{decimals}.pt"


def to_uint8(images):
    if images.dtype == torch.uint8:
        return images
    # floor(x + 0.5) like PIL and stylenas.metrics.to_uint8, so grids, PNGs and FID see the same pixels
    return (images.detach().float() * 127.5 + 128).clamp(0, 255).to(torch.uint8)


def save_image_grid(images, path, nrow=8):
    grid = torchvision.utils.make_grid(to_uint8(images).cpu(), nrow=nrow, padding=1)
    save_image_atomic(torchvision.transforms.functional.to_pil_image(grid), path)


class KeepBest:
    """Keeps the checkpoint with the best metric value (``mode`` "min" for FID)."""

    def __init__(self, path, metric, mode="min", best=None):
        self.path, self.metric, self.mode, self.best = Path(path), metric, mode, best

    def improves(self, value):
        if value is None or not math.isfinite(value):
            return False
        return self.best is None or (value < self.best if self.mode == "min" else value > self.best)

    def update(self, value, state, save):
        """Save ``state`` with ``save(state, path)`` when ``value`` is the best so far; True if saved."""
        if not self.improves(value):
            return False
        self.best = value
        save(state, self.path)
        return True

    def state_dict(self):
        return {"metric": self.metric, "mode": self.mode, "best": self.best}

    def load_state_dict(self, state):
        self.best = state.get("best")
