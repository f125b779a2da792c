"""PNG plots drawn with matplotlib (real axes and tick values) and atomic image writing.

Figures are built on ``matplotlib.figure.Figure`` with the Agg canvas directly, not through
``pyplot``: no global backend is switched in the user's process, no display is needed and no
figure is left open. Every function that draws returns its ``Figure``, so callers and tests can
read back what is on the axes.

- ``ema_smooth(values, weight)``: the debiased exponential moving average TensorBoard draws as
  its "smoothed" curve (NaN entries are skipped, not propagated).
- ``line_panels(panels, ...)``: one axes per ``(title, x, {label: y})`` panel; with ``smoothing``
  each series is drawn faint (raw) under its smoothed line; panels with the same labels share
  colours and the first of them names them in a legend.
- ``save_line_panels(panels, path, ...)``: ``line_panels`` written as a PNG; by default the y axis
  is a softmax weight in [0, 1] (the alpha plots of every searcher).
- ``plot_series(records, keys, path, x_key="kimg")``: one panel per logged key of log records
  (dicts) against ``x_key``, raw and smoothed; the loss plots of every trainer and searcher.
- ``new_figure(width, height)``: an empty Figure on an Agg canvas, for figures of their own (DGGAN's
  Fig. 3); ``save_figure(figure, path)``: atomic PNG; ``save_image_atomic(image, path)``: a PIL image.
"""

from __future__ import annotations

import math

import matplotlib
import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from .io import atomic_path

DPI = 100
PANEL_INCHES = (4.0, 2.8)  # width, height of one axes with its labels


def ema_smooth(values, weight=0.6):
    """Debiased EMA: s_t = weight s_(t-1) + (1 - weight) y_t, divided by 1 - weight^n over the n finite
    values seen so far (as TensorBoard), so the first point equals the first value."""
    if not 0.0 <= weight < 1.0:
        raise ValueError(f"smoothing weight must be in [0, 1), got {weight}")
    smoothed, last, seen = [], 0.0, 0
    for value in values:
        value = float(value) if value is not None else math.nan
        if math.isfinite(value):
            last = weight * last + (1.0 - weight) * value
            seen += 1
        smoothed.append(last / (1.0 - weight ** seen) if seen else math.nan)
    return smoothed


def new_figure(width, height):
    """An empty ``width`` x ``height`` inch Figure on its own Agg canvas (``DPI`` pixels per inch)."""
    figure = Figure(figsize=(width, height), dpi=DPI)
    FigureCanvasAgg(figure)
    return figure


def _as_panel(panel):
    """(title, x, series): a two-tuple (title, series) is drawn against 1, 2, ... (the iteration)."""
    if len(panel) == 2:
        title, series = panel
        length = max((len(v) for v in series.values()), default=0)
        return title, list(range(1, length + 1)), series
    return panel


def _colours(count):
    if count <= 10:
        return [f"C{i}" for i in range(count)]
    palette = list(matplotlib.colormaps["tab20"].colors)
    return [palette[i % len(palette)] for i in range(count)]


def line_panels(panels, *, x_label="iteration", y_label=None, y_range=None, smoothing=0.0, columns=4,
                legend=True):
    """A grid of line plots, one axes per panel ``(title, x, {label: y})`` (or ``(title, {label: y})``
    against 1, 2, ...). ``y_label`` is one text for every panel or a list of one per panel;
    ``y_range`` fixes every y axis (else matplotlib fits each to its data); ``smoothing`` in (0, 1)
    draws each series faint (its label + " (raw)") under its ``ema_smooth`` line (its label).
    Series are coloured by their position in the panel, so panels with the same labels (e.g. the
    operations of every layer) share colours; the first panel of each label set carries the legend."""
    panels = [_as_panel(p) for p in panels]
    if not panels:
        raise ValueError("line_panels: nothing to plot")
    cols = min(columns, len(panels))
    rows = math.ceil(len(panels) / cols)
    figure = new_figure(cols * PANEL_INCHES[0], rows * PANEL_INCHES[1])
    y_labels = y_label if isinstance(y_label, (list, tuple)) else [y_label] * len(panels)
    legends_drawn = set()
    for index, (title, x, series) in enumerate(panels):
        axes = figure.add_subplot(rows, cols, index + 1)
        for colour, (label, values) in zip(_colours(len(series)), series.items()):
            xs = np.asarray(x[:len(values)], dtype=float)
            ys = np.asarray([math.nan if v is None else float(v) for v in values], dtype=float)
            marker = "o" if np.isfinite(ys).sum() == 1 else None  # a single point would be invisible
            if smoothing > 0 and len(values) > 1:
                axes.plot(xs, ys, color=colour, alpha=0.3, linewidth=1.0, label=f"{label} (raw)")
                axes.plot(xs, ema_smooth(ys, smoothing), color=colour, linewidth=1.6, label=label)
            else:
                axes.plot(xs, ys, color=colour, linewidth=1.6, marker=marker, label=label)
        axes.set_title(title, fontsize=9)
        axes.set_xlabel(x_label, fontsize=8)
        if y_labels[index]:
            axes.set_ylabel(y_labels[index], fontsize=8)
        if y_range is not None:
            axes.set_ylim(*y_range)
        axes.tick_params(labelsize=7)
        axes.grid(True, alpha=0.3)
        if legend and tuple(series) not in legends_drawn:
            legends_drawn.add(tuple(series))
            shown = [line for line in axes.get_lines() if not line.get_label().endswith(" (raw)")]
            axes.legend(shown, [line.get_label() for line in shown], fontsize=6, ncol=2 if len(shown) > 4 else 1,
                        framealpha=0.7)
    if smoothing > 0:
        figure.suptitle(f"faint: raw values, solid: EMA-smoothed (weight {smoothing:g})", fontsize=8)
    figure.tight_layout()
    return figure


def save_figure(figure, path):
    """Write ``figure`` as a PNG at ``path`` atomically (readers never see half a file)."""
    with atomic_path(path, suffix=".png") as tmp:
        figure.savefig(tmp, format="png", dpi=DPI)


def save_line_panels(panels, path, y_range=(0.0, 1.0), columns=4, x_label="iteration",
                     y_label="softmax weight", smoothing=0.0, legend=True):
    """``line_panels`` written to ``path`` (PNG, atomic); returns the Figure. The defaults draw
    softmax weights (operation or latent choices) on a [0, 1] axis."""
    figure = line_panels(panels, x_label=x_label, y_label=y_label, y_range=y_range, smoothing=smoothing,
                         columns=columns, legend=legend)
    save_figure(figure, path)
    return figure


def plot_series(records, keys, path, x_key="kimg", title=None, smoothing=0.6):
    """One panel per logged key against ``x_key`` (records without a finite value are skipped):
    the raw values faint, their EMA (``plots.ema_smooth``) solid. Returns the matplotlib Figure, or
    None (and writes nothing) when no key has a finite value."""
    panels, y_labels = [], []
    for key in keys:
        points = [(r[x_key], r[key]) for r in records if _finite(r.get(key)) and _finite(r.get(x_key))]
        if not points:
            continue
        panels.append((f"{title}: {key}" if title else key, [p[0] for p in points], {key: [p[1] for p in points]}))
        y_labels.append(key)
    if not panels:
        return None
    return save_line_panels(panels, path, y_range=None, columns=min(len(panels), 4), x_label=x_key,
                            y_label=y_labels, smoothing=smoothing, legend=False)


def _finite(value):
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def save_image_atomic(image, path):
    with atomic_path(path, suffix=".png") as tmp:
        image.save(tmp, format="PNG")
