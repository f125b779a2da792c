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


def simulate(records, top_k, p, final_resolution, draws=20):
    """Fig. 3 (right), the paper's ablated simulation: Algorithm 1 replayed on the candidates a
    search trained, with another K and p; a child the search did not train is ignored (so it
    explores less than a real run would). Returns the mean normalised FID of the best candidate
    at the final resolution over ``draws`` seeded replays that reach it, and the share that do."""
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
                          key=lambda r: (r["fid"], r["id"]))
            parents = pool[:top_k]
            for child in pool:
                if child["resolution"] == final_resolution and (best is None or child["fid_norm"] < best):
                    best = child["fid_norm"]
        bests.append(best)
    reached = [b for b in bests if b is not None]
    return {"best_fid_norm": float(np.mean(reached)) if reached else None, "reached": len(reached) / draws}


def budget_simulations(records, top_k, p, final_resolution):
    """``simulate`` over K = 1, 2, 4, ... up to the search's K (at its p) and over p = 0.1 ... its
    p and 1 (at its K)."""
    ks = sorted({min(2 ** i, top_k) for i in range(top_k.bit_length() + 1)})
    ps = sorted({round(x / 10, 1) for x in range(1, 11) if x / 10 <= p + 1e-9} | {p, 1.0})
    return {"K": {str(k): simulate(records, k, p, final_resolution) for k in ks},
            "p": {str(q): simulate(records, top_k, q, final_resolution) for q in ps}}


def plot_fig3(records, best_id, path, simulation=None, size=(420, 300)):
    """Fig. 3 like: left, normalised FID against log2(G/D parameters) for every candidate with the
    best candidate's growing route as red arrows; middle, per action the share of children that
    improved on their parent (bars) and the mean child/parent ratio (dots); right (with
    ``simulation`` of ``budget_simulations``), the best normalised FID of replays with smaller K or p."""
    from PIL import Image, ImageDraw

    from ...plots import save_image_atomic

    width, height = size
    image = Image.new("RGB", (3 * width, height), "white")
    draw = ImageDraw.Draw(image)
    points = [(math.log2(r["g_d_ratio"]), r.get("fid_norm") or 1.0, r) for r in records]
    xs, ys = [p[0] for p in points], [p[1] for p in points]
    x0, x1 = min(xs) - 0.5, max(xs) + 0.5
    y0, y1 = 0.0, max(max(ys) * 1.05, 1.1)
    box = (40, 22, width - 10, height - 30)

    def at(x, y):
        return (box[0] + (box[2] - box[0]) * (x - x0) / (x1 - x0), box[3] - (box[3] - box[1]) * (y - y0) / (y1 - y0))

    draw.rectangle(box, outline=(160, 160, 160))
    draw.text((box[0], 4), "normalised FID vs log2(G/D params); red: best route", fill="black")
    draw.text((box[0], box[3] + 4), f"{x0:.1f}", fill=(90, 90, 90))
    draw.text((box[2] - 24, box[3] + 4), f"{x1:.1f}", fill=(90, 90, 90))
    draw.text((4, box[1]), f"{y1:.2g}", fill=(90, 90, 90))
    draw.text((4, box[3] - 10), "0", fill=(90, 90, 90))
    draw.line([at(x0, 1.0), at(x1, 1.0)], fill=(200, 200, 200))
    for x, y, _ in points:
        px, py = at(x, y)
        draw.ellipse((px - 2, py - 2, px + 2, py + 2), fill=(31, 119, 180))
    by_id = {r["id"]: (x, y) for x, y, r in points}
    parents = {r["id"]: r["parent"] for _, _, r in points}
    cid = best_id
    while cid in parents and parents[cid] in by_id:
        (ax, ay), (bx, by) = at(*by_id[parents[cid]]), at(*by_id[cid])
        draw.line([(ax, ay), (bx, by)], fill=(214, 39, 40), width=2)
        angle = math.atan2(by - ay, bx - ax)
        for turn in (2.6, -2.6):
            draw.line([(bx, by), (bx + 7 * math.cos(angle + turn), by + 7 * math.sin(angle + turn))],
                      fill=(214, 39, 40), width=2)
        cid = parents[cid]
    stats = action_statistics(records)
    left = width
    draw.text((left + 10, 4), "per action: share improved (bar), mean child/parent (dot, 0..2)", fill="black")
    if stats:
        bar_box = (left + 10, 22, left + width - 10, height - 60)
        draw.rectangle(bar_box, outline=(160, 160, 160))
        step = (bar_box[2] - bar_box[0]) / len(stats)
        for i, (action, s) in enumerate(stats.items()):
            x = bar_box[0] + i * step
            top = bar_box[3] - (bar_box[3] - bar_box[1]) * s["improved"]
            draw.rectangle((x + 2, top, x + max(step - 2, 3), bar_box[3]), fill=(44, 160, 44))
            dot = bar_box[3] - (bar_box[3] - bar_box[1]) * min(s["mean"], 2.0) / 2.0
            draw.ellipse((x + step / 2 - 3, dot - 3, x + step / 2 + 3, dot + 3), fill=(214, 39, 40))
            label = action.replace("conv", "").replace(" ", "")
            draw.text((x + 2, bar_box[3] + 4 + 12 * (i % 3)), label[:10], fill="black")
    if simulation:
        _plot_simulation(draw, simulation, 2 * width, width, height)
    save_image_atomic(image, path)


def _plot_simulation(draw, simulation, left, width, height):
    draw.text((left + 10, 4), "replays: best normalised FID at the final size", fill="black")
    values = [v["best_fid_norm"] for series in simulation.values() for v in series.values()
              if v["best_fid_norm"] is not None]
    if not values:
        draw.text((left + 10, 40), "no replay reached the final resolution", fill="black")
        return
    low, high = min(values), max(values)
    span = (high - low) or 1.0
    half = (height - 40) // 2
    for row, (name, series) in enumerate(simulation.items()):
        box = (left + 40, 22 + row * half, left + width - 10, 22 + row * half + half - 24)
        draw.rectangle(box, outline=(160, 160, 160))
        draw.text((left + 2, box[1]), f"{high:.3g}", fill=(90, 90, 90))
        draw.text((left + 2, box[3] - 10), f"{low:.3g}", fill=(90, 90, 90))
        keys = list(series)
        points = []
        for i, key in enumerate(keys):
            x = box[0] + (box[2] - box[0]) * (i + 0.5) / len(keys)
            draw.text((x - 8, box[3] + 2), key, fill="black")
            value = series[key]["best_fid_norm"]
            if value is not None:
                points.append((x, box[3] - 6 - (box[3] - box[1] - 12) * (value - low) / span))
        draw.text((box[2] - 12, box[3] + 2), name, fill=(214, 39, 40))
        if len(points) > 1:
            draw.line(points, fill=(31, 119, 180), width=2)
        for x, y in points:
            draw.ellipse((x - 3, y - 3, x + 3, y + 3), fill=(31, 119, 180))
