"""The leaderboard of ``stylenas compare``: statistics over seeds and the files a reader keeps.

- ``leaderboard.json``: a list of rows, one per job (run), each with ``method`` (a searcher,
  ``random-<searcher>`` or a published genotype), ``seed``, ``status``, ``fid``, ``is``, ``kid``,
  ``precision``, ``recall``, ``density``, ``coverage``, ``params``, ``search_kimg``, ``search_seconds``
  (and ``search_gpu_hours``, ``search_score``, ...) and ``features``: ``inception`` (pytorch-fid's
  weights) or ``proxy`` (``--proxy``: a seeded random-weight Inception; then every feature-based number
  is a proxy, and the markdown, the plot and the protocol say so); a failed job has ``error``
  instead of numbers.
- ``leaderboard.csv``: the same rows.
- ``summary.json``: per method, mean and standard deviation (ddof 1, over seeds) of every number,
  the rank against random search in its space, and Kendall's tau.
- ``leaderboard.md``: the protocol, then the per-method table (mean ± std), then every run.
- ``leaderboard.png``: FID against search cost (kimg), one marker per run, mean ± std per method.

Statistics:
- rank against random search: for a searcher M with a ``random-M`` row, M's place (1 or 2) when the
  two are ordered by mean FID, and the share of seeds on which M's FID is lower than random's (same
  seed), so that a reader sees whether the search signal beats drawing architectures at random.
- Kendall's tau (``scipy.stats.kendalltau``, tau-b) between the search-time score of every
  architecture a search evaluated and its retrained FID where both exist: each job retrains the
  architecture it returned, so the pairs are (that architecture's score, its FID) over the runs of
  one method; None with fewer than two pairs or constant values.
"""
from __future__ import annotations

import csv
import io
import json
import math
from pathlib import Path

import numpy as np

from ..io import atomic_path

METRICS = ("fid", "is", "kid", "precision", "recall", "density", "coverage", "params", "search_kimg",
           "search_seconds")
COLUMNS = ("method", "seed", "status", *METRICS, "features", "search_gpu_hours", "search_score",
           "search_score_name", "candidates", "retrain_seconds", "job", "kind", "genotype", "error")
PROXY_WARNING = ("**PROXY FEATURES**: every FID, IS, KID, precision, recall, density and coverage here is computed "
                 "on a seeded random-weight Inception (`stylenas compare --proxy`, no weights file), not on "
                 "pytorch-fid's weights. The numbers order the rows of this leaderboard only; they are not "
                 "comparable to any published FID.")


def _mean_std(values):
    values = [v for v in values if v is not None]
    if not values:
        return None, None
    return float(np.mean(values)), (float(np.std(values, ddof=1)) if len(values) > 1 else None)


def kendall_tau(pairs):
    """(tau, p-value) of the (score, fid) pairs, None where undefined."""
    from scipy.stats import kendalltau

    pairs = [(s, f) for s, f in pairs if s is not None and f is not None]
    if len(pairs) < 2:
        return None, None
    tau, p = kendalltau([s for s, _ in pairs], [f for _, f in pairs])
    return (None, None) if math.isnan(tau) else (float(tau), float(p))


def summarise(results):
    """Per method (in order of first appearance): runs, failures, mean/std of every metric, the rank
    against random search, Kendall's tau."""
    methods = list(dict.fromkeys(r["method"] for r in results))
    summary = {}
    for method in methods:
        runs = [r for r in results if r["method"] == method]
        ok = [r for r in runs if r["status"] == "ok"]
        entry = {"kind": runs[0].get("kind"), "runs": len(runs), "failed": len(runs) - len(ok)}
        for key in METRICS:
            entry[key], entry[f"{key}_std"] = _mean_std([r.get(key) for r in ok])
        tau, p = kendall_tau([(r.get("search_score"), r.get("fid")) for r in ok])
        entry["kendall_tau"], entry["kendall_p"] = tau, p
        summary[method] = entry
    for method, entry in summary.items():
        baseline = summary.get(f"random-{method}")
        if baseline is None or entry["fid"] is None or baseline["fid"] is None:
            continue
        entry["rank_vs_random"] = 1 if entry["fid"] < baseline["fid"] else 2
        ours = {r["seed"]: r["fid"] for r in results if r["method"] == method and r["status"] == "ok"}
        theirs = {r["seed"]: r["fid"] for r in results if r["method"] == f"random-{method}" and r["status"] == "ok"}
        common = sorted(set(ours) & set(theirs))
        entry["wins_vs_random"] = (sum(ours[s] < theirs[s] for s in common) / len(common)) if common else None
    return summary


def _fmt(value, std=None, digits=4):
    if value is None:
        return "—"
    text = f"{value:.{digits}g}"
    return text + (f" ± {std:.2g}" if std is not None else "")


def is_proxy(settings):
    return settings.get("features", "inception") == "proxy"


def metric_headers(settings):
    """Column names of the seven feature-based metrics (FID ... coverage): proxies say so."""
    if is_proxy(settings):
        return ("FID (proxy features)", "IS (proxy)", "KID (proxy)", "precision (proxy)", "recall (proxy)",
                "density (proxy)", "coverage (proxy)")
    return ("FID", "IS", "KID", "precision", "recall", "density", "coverage")


def protocol_text(settings, family):
    from .evaluate import FEATURES

    b, e = settings["budget"], settings["eval"]
    return "\n".join([*([PROXY_WARNING] if is_proxy(settings) else []),
        f"Data: `{settings['data']}` at {settings['resolution']} px; family `{settings['family']}`; "
        f"budget preset `{b['name']}`; seeds {', '.join(map(str, settings['seeds']))}.",
        f"Search budget (kimg of images through G or D): {family.budget_text()}; wall seconds and GPU-hours "
        f"recorded beside it.",
        family.recipe_text(),
        f"Evaluation (every row): G_ema, {e['num']} generated images (seeds 0..{e['num'] - 1}) against the first "
        f"{e['num_ref']} images of the data: FID, IS (10 splits), KID (unbiased, cubic kernel) as `stylenas fid` "
        f"computes them; precision and recall (k = 3), density and coverage (k = 5) on the same Inception "
        f"pool features; params of G. Mean ± std over seeds.",
        f"Feature network: {FEATURES[settings.get('features', 'inception')]}.",
    ])


def _markdown(results, summary, settings, family):
    names = " | ".join(metric_headers(settings))
    title = "# Leaderboard (PROXY features: not FID)" if is_proxy(settings) else "# Leaderboard"
    lines = [title, "", "## Protocol", "", protocol_text(settings, family), "", "## Methods", "",
             f"| method | runs | {names} | params | search kimg | search s | vs random | Kendall tau |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for method, s in summary.items():
        runs = f"{s['runs'] - s['failed']}/{s['runs']}"
        vs = "—" if "rank_vs_random" not in s else (f"rank {s['rank_vs_random']}/2, wins "
                                                    f"{_fmt(s['wins_vs_random'], digits=2)}")
        cells = [_fmt(s[k], s[f"{k}_std"]) for k in METRICS[:7]]
        cells += [_fmt(s["params"], digits=6), _fmt(s["search_kimg"]), _fmt(s["search_seconds"], digits=3)]
        lines.append(f"| {method} | {runs} | " + " | ".join(cells) + f" | {vs} | {_fmt(s['kendall_tau'], digits=3)} |")
    lines += ["", "## Runs", "", f"| method | seed | status | {names} | params | search kimg | search s |",
              "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in results:
        if r["status"] == "ok":
            cells = [_fmt(r[k]) for k in METRICS[:7]] + [str(r["params"]), _fmt(r["search_kimg"]),
                                                          _fmt(r["search_seconds"], digits=3)]
        else:
            cells = [f"failed: {r['error']}"] + [""] * 9
        lines.append(f"| {r['method']} | {r['seed']} | {r['status']} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _plot(results, summary, path, proxy=False):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for k, (method, s) in enumerate(summary.items()):
        runs = [r for r in results if r["method"] == method and r["status"] == "ok"]
        if not runs:
            continue
        colour = colours[k % len(colours)]
        ax.scatter([r["search_kimg"] for r in runs], [r["fid"] for r in runs], color=colour, alpha=0.5, s=18)
        ax.errorbar([s["search_kimg"]], [s["fid"]], xerr=[s["search_kimg_std"] or 0], yerr=[s["fid_std"] or 0],
                    color=colour, marker="D", capsize=4, label=method)
    ax.set_xlabel("search cost (kimg of images through G and D)")
    if proxy:
        ax.set_ylabel("proxy FID of the retrained generator (lower is better)")
        ax.set_title("PROXY features (seeded random-weight Inception): not comparable to published FID",
                     fontsize=9)
    else:
        ax.set_ylabel("FID of the retrained generator (lower is better)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, format="png", dpi=120)
    plt.close(fig)


def write_leaderboard(outdir, results, settings, family):
    """Write every leaderboard file; returns the rows."""
    outdir = Path(outdir)
    features = settings.get("features", "inception")  # one per compare folder (--resume refuses a change)
    rows = [{key: features if key == "features" else r.get(key) for key in COLUMNS} for r in results]
    summary = summarise(results)
    texts = {"leaderboard.json": json.dumps(rows, indent=1) + "\n",
             "summary.json": json.dumps({"settings": settings, "methods": summary}, indent=1) + "\n",
             "leaderboard.md": _markdown(results, summary, settings, family)}
    table = io.StringIO()
    writer = csv.DictWriter(table, fieldnames=COLUMNS)
    writer.writeheader()
    writer.writerows(rows)
    texts["leaderboard.csv"] = table.getvalue()
    for name, text in texts.items():
        with atomic_path(outdir / name) as tmp:
            tmp.write_text(text)
    _plot(results, summary, outdir / "leaderboard.png", proxy=is_proxy(settings))
    return rows
