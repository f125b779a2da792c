"""DGGAN's outputs beside the genotype: the candidates' log lines and ``candidates.csv``, and Fig. 3
(normalised FID against the G/D parameter ratio with the best route, per-action improvement over
the parent, and the ablated replays of Algorithm 1 with smaller K or p, also ``simulation.json``)."""

from __future__ import annotations

import csv
import io
import json
import math

import numpy as np

from ...io import atomic_path
from ...plots import new_figure, save_figure


LOG_KEYS = ("step", "id", "parent", "action", "resolution", "fid", "fid_norm", "g_params", "d_params", "g_d_ratio",
            "baseline", "kept", "d_loss", "g_loss", "seconds")


def log_keys(label):
    """LOG_KEYS with FID named as the scorer logs it (``fid``, or ``proxy_fid`` for the proxy)."""
    return tuple(k.replace("fid", label) for k in LOG_KEYS)


def log_record(record, label="fid"):
    """One candidate's log line; the state keeps the score under "fid", the log under ``label``."""
    return {name: record.get(k) for k, name in zip(LOG_KEYS, log_keys(label))}


def write_csv(records, path, label="fid"):
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(log_keys(label) + ("genotype",))
    for r in records:
        if "fid" in r:
            writer.writerow([r.get(k) for k in LOG_KEYS] + [json.dumps(r["genotype"]["stages"])])
    with atomic_path(path) as tmp:
        tmp.write_text(buffer.getvalue())


def action_statistics(records):
    """Fig. 3 (middle): per action, the share of children better than their parent and the mean
    and standard deviation of child / parent normalised FID."""
    by_id = {r["id"]: r for r in records}
    groups = {}
    for r in records:
        parent = by_id.get(r["parent"])
        if r["action"] is None or parent is None or not r.get("fid_norm") or not parent.get("fid_norm"):
            continue
        groups.setdefault(r["action"], []).append(r["fid_norm"] / parent["fid_norm"])
    return {a: {"count": len(v), "improved": sum(x < 1 for x in v) / len(v), "mean": float(np.mean(v)),
                "std": float(np.std(v))} for a, v in sorted(groups.items())}


def simulate(records, top_k, p, final_resolution, draws=20, rank_by="fid_norm"):
    """Fig. 3 (right), the paper's ablated simulation: Algorithm 1 replayed on the candidates a
    search trained, with another K and p, ranking children by ``rank_by`` as the search did; a
    child the search did not train is ignored (so it explores less than a real run would). Returns
    the mean normalised FID of the best candidate at the final resolution over ``draws`` seeded
    replays that reach it, and the share that do."""
    children = {}
    for r in records:
        if r["parent"] is not None and r.get("sampled", True) and r.get("fid_norm") is not None:
            children.setdefault(r["parent"], []).append(r)
    roots = [r for r in records if r["parent"] is None]
    bests = []
    for seed in range(draws):
        rng, parents, best = np.random.default_rng(seed), roots, None
        while parents:
            pool = sorted((c for parent in parents for c in children.get(parent["id"], []) if rng.random() < p),
                          key=lambda r: (r[rank_by], r["id"]))
            parents = pool[:top_k]
            for child in pool:
                if child["resolution"] == final_resolution and (best is None or child["fid_norm"] < best):
                    best = child["fid_norm"]
        bests.append(best)
    reached = [b for b in bests if b is not None]
    return {"best_fid_norm": float(np.mean(reached)) if reached else None, "reached": len(reached) / draws}


def budget_simulations(records, top_k, p, final_resolution, rank_by="fid_norm"):
    """``simulate`` over K = 1, 2, 4, ... up to the search's K (at its p) and over p = 0.1 ... its
    p and 1 (at its K)."""
    ks = sorted({min(2 ** i, top_k) for i in range(top_k.bit_length() + 1)})
    ps = sorted({round(x / 10, 1) for x in range(1, 11) if x / 10 <= p + 1e-9} | {p, 1.0})
    return {"K": {str(k): simulate(records, k, p, final_resolution, rank_by=rank_by) for k in ks},
            "p": {str(q): simulate(records, top_k, q, final_resolution, rank_by=rank_by) for q in ps}}


def score_title(label):
    """How a plot names the score: a proxy score (``proxy_fid``) is never called an FID."""
    return "PROXY FID (random-weight Inception, not an FID)" if label.startswith("proxy") else "FID"


def plot_fig3(records, best_id, path, simulation=None, label="fid"):
    """Fig. 3 like, with matplotlib: left, normalised FID (FID / the baseline's at the same resolution)
    against log2(G/D parameters) for every scored candidate, the best candidate's growing route as red
    arrows; middle, per action the share of children that improved on their parent (bars, left axis)
    and the mean child/parent ratio with its standard deviation (dots, right axis); right (with
    ``simulation`` of ``budget_simulations``), the best normalised FID of replays with smaller K or p.
    ``label``: the scorer's name of the score (``proxy_fid`` titles the figure as a proxy). Written
    atomically to ``path``; returns the Figure."""
    score = "proxy FID" if label.startswith("proxy") else "FID"
    figure = new_figure(15.0 if simulation else 10.0, 4.6)
    figure.suptitle(f"DGGAN candidates scored by {score_title(label)}", fontsize=10)
    grid = figure.add_gridspec(2, 3 if simulation else 2)
    scatter, actions = figure.add_subplot(grid[:, 0]), figure.add_subplot(grid[:, 1])

    scored = {r["id"]: (math.log2(r["g_d_ratio"]), r["fid_norm"]) for r in records
              if r.get("fid_norm") is not None and r.get("g_d_ratio")}
    scatter.scatter([x for x, _ in scored.values()], [y for _, y in scored.values()], s=14, color="C0",
                    label="candidates")
    scatter.axhline(1.0, color="0.6", linestyle="--", linewidth=1, label="baseline (ProgGAN)")
    parents = {r["id"]: r["parent"] for r in records}
    child = best_id
    while child in scored and parents.get(child) in scored:
        scatter.annotate("", xy=scored[child], xytext=scored[parents[child]],
                         arrowprops={"arrowstyle": "->", "color": "C3", "linewidth": 1.6})
        child = parents[child]
    if best_id in scored:
        scatter.scatter(*scored[best_id], s=40, color="C3", zorder=3, label="best (route: red arrows)")
    scatter.set_xlabel("log2(G parameters / D parameters)")
    scatter.set_ylabel(f"normalised {score} ({score} / baseline {score})")
    scatter.set_title("candidates", fontsize=10)
    scatter.legend(fontsize=7)

    stats = action_statistics(records)
    names = list(stats)
    positions = np.arange(len(names))
    actions.bar(positions, [stats[a]["improved"] for a in names], color="C2", alpha=0.8,
                label="share improved")
    actions.set_ylim(0.0, 1.0)
    actions.set_ylabel("share of children better than their parent")
    actions.set_xticks(positions)
    actions.set_xticklabels(names, rotation=45, ha="right", fontsize=7)
    actions.set_xlabel("action")
    actions.set_title("per action", fontsize=10)
    ratio = actions.twinx()
    ratio.errorbar(positions, np.array([stats[a]["mean"] for a in names], dtype=float),
                   yerr=np.array([stats[a]["std"] for a in names], dtype=float), fmt="o", color="C3", capsize=3,
                   label=f"child / parent {score}")
    ratio.axhline(1.0, color="C3", linestyle=":", linewidth=1)
    ratio.set_ylabel(f"mean child / parent normalised {score}")
    if not names:
        actions.text(0.5, 0.5, "no scored children yet", ha="center", va="center", transform=actions.transAxes)

    if simulation:
        for row, (name, label) in enumerate((("K", "top-K kept (at the search's p)"),
                                              ("p", "sampling probability p (at the search's K)"))):
            axes = figure.add_subplot(grid[row, 2])
            series = simulation.get(name, {})
            points = [(float(k), v["best_fid_norm"]) for k, v in series.items() if v["best_fid_norm"] is not None]
            if points:
                axes.plot([x for x, _ in points], [y for _, y in points], marker="o", color="C0")
                axes.set_xticks([float(k) for k in series])
                axes.set_xticklabels(list(series))
            else:
                axes.text(0.5, 0.5, "no replay reached the final resolution", ha="center", va="center",
                          fontsize=8, transform=axes.transAxes)
            axes.set_xlabel(label, fontsize=8)
            axes.set_ylabel(f"best normalised {score}", fontsize=8)
            axes.tick_params(labelsize=7)
            if row == 0:
                axes.set_title("replays of Algorithm 1", fontsize=10)
    figure.tight_layout()
    save_figure(figure, path)
    return figure
