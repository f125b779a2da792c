"""What a training run writes besides checkpoints: log.jsonl, progress, snapshots, grids, plots.

API (only rank 0 should construct writers; every writer is atomic or flushed line by line):
- ``RunLog(path, resume_at=None, key="kimg")``: appends one JSON object per ``write(record)`` and
  flushes it. With ``resume_at`` the lines whose ``key`` is beyond it (written after the
  checkpoint a run resumes from) are dropped first. ``records()`` reads the file back.
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
            kept = [line for line in self.path.read_text().splitlines()
                    if key in _parse(line) and _parse(line)[key] <= resume_at + 1e-9]
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
