"""The logic behind scripts/fid.py: resolve inputs, extract features, compute FID / IS / KID.

Every input problem ends as one `FIDError` with a one-line message naming the input; the
script prints it as `Error: ...` and exits non-zero.
"""
import sys
from dataclasses import dataclass
from pathlib import Path

import click
import torch

from ..datasets import DatasetError, LMDBImages
from ..devices import resolve_device
from .data import IMAGE_EXTENSIONS, ImageFolder, ImageReadError, extract_features
from .frechet import frechet_distance
from .inception import WEIGHTS_FILE, InceptionV3FID, InceptionWeightsError
from .scores import inception_score, kernel_inception_distance
from .stats import StatsFileError, load_stats, save_stats

__all__ = ["FIDError", "PROTOCOL", "evaluate", "format_text"]

PROTOCOL = (f"pytorch-fid's: FID Inception v3 ({WEIGHTS_FILE}), uint8 RGB images, bilinear resize to 299x299 "
            f"(align_corners=False, no antialias), 2048-d pool features, float64 mean and unbiased covariance")
FEATURE_DIM = 2048
CHECKPOINT_SUFFIXES = (".pt", ".pth", ".pkl", ".ckpt")


class FIDError(Exception):
    """A one-line, user-facing error (bad input, missing weights, ...)."""


@dataclass
class Source:
    label: str  # "A" or "B"
    path: Path
    kind: str  # "folder", "lmdb" or "npz"
    dataset: object = None  # images, for folder and lmdb
    stats: tuple = None  # (mu, sigma), for npz


def _open_lmdb(label, path):
    try:
        return LMDBImages(str(path))
    except DatasetError as e:  # names the file already
        raise FIDError(f"{label}: {_one_line(e)}") from None
    except Exception as e:
        raise FIDError(f"{label}: {path}: cannot open it as an image LMDB ({type(e).__name__}: "
                       f"{_one_line(e)})") from None


def _one_line(error):
    """The message of `error` on one line; a DataLoader worker's re-raise carries the whole
    worker traceback, whose last line is "module.Class: message"."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    last = lines[-1] if lines else type(error).__name__
    prefix = f"{type(error).__module__}.{type(error).__qualname__}: "
    return last[len(prefix):] if last.startswith(prefix) else last


def open_source(label, path, num=None, log=None):
    """Classify and open input `path` (image folder, LMDB, .npz statistics) without computing anything."""
    path = Path(path)
    if not path.exists():
        raise FIDError(f"{label}: {path} does not exist (expected an image folder, an .lmdb, an .npz of "
                       f"statistics or a generator checkpoint)")
    if path.suffix.lower() == ".npz":
        try:
            return Source(label, path, "npz", stats=load_stats(path))
        except StatsFileError as e:
            raise FIDError(f"{label}: {e}") from None
    if path.suffix.lower() in CHECKPOINT_SUFFIXES and path.is_file():
        from ..train.generate import checkpoint_images  # `num` quantised images of its G_ema

        try:
            return Source(label, path, "checkpoint", dataset=checkpoint_images(path, num))
        except ValueError as e:
            raise FIDError(f"{label}: {e}") from None
    if path.suffix.lower() == ".lmdb" or (path.is_dir() and (path / "data.mdb").is_file()):
        dataset, kind = _open_lmdb(label, path), "lmdb"
    elif path.is_dir():
        dataset, kind = ImageFolder(path), "folder"
    else:
        raise FIDError(f"{label}: {path}: not an image folder, an .lmdb, an .npz of statistics or a generator "
                       f"checkpoint")
    if len(dataset) == 0:
        what = f"no images ({', '.join(IMAGE_EXTENSIONS)})" if kind == "folder" else "no images"
        raise FIDError(f"{label}: {path}: {what} found")
    if num is not None:
        if len(dataset) < num and log is not None:
            log(f"Warning: {label}: {path} has {len(dataset)} images, fewer than --num {num}; using all of them")
        dataset = torch.utils.data.Subset(dataset, range(min(num, len(dataset))))
    if len(dataset) < 2:
        raise FIDError(f"{label}: {path}: statistics need at least 2 images, found {len(dataset)}")
    return Source(label, path, kind, dataset=dataset)


def _progress_bar(label, length, show):
    return click.progressbar(length=length, label=label, file=sys.stderr if show else _Null())


class _Null:
    def write(self, _):
        pass

    def flush(self):
        pass

    def isatty(self):
        return False


def evaluate(a, b=None, num=None, batch=50, device="auto", workers=4, inception=None, save_stats_path=None,
             want_is=False, want_kid=False, splits=10, kid_subsets=100, kid_subset_size=1000, progress=True,
             log=None):
    """FID of A against B (and IS of A, KID of A vs B), as a JSON-ready dict.

    `a`, `b`: image folder, LMDB or .npz paths (b may be None when only statistics or the IS
    of A are wanted). `save_stats_path` writes A's statistics. `log(line)` receives warnings.
    Raises FIDError for every user-facing problem.
    """
    log = log or (lambda line: click.echo(line, err=True))
    if batch < 1:
        raise FIDError(f"--batch must be at least 1, got {batch}")
    if num is not None and num < 2:
        raise FIDError(f"--num must be at least 2, got {num}")
    if b is None and not (save_stats_path or want_is):
        raise FIDError("give a second input B to compare with, or --save-stats / --is for A alone")
    sources = [open_source("A", a, num, log)] + ([open_source("B", b, num, log)] if b is not None else [])
    src_a, src_b = sources[0], (sources[1] if b is not None else None)
    if want_is and src_a.kind == "npz":
        raise FIDError(f"--is: A ({src_a.path}) is a statistics file; the Inception Score needs images")
    if want_is and len(src_a.dataset) < splits:
        raise FIDError(f"--is: the Inception Score uses {splits} splits and needs at least {splits} images; "
                       f"A ({src_a.path}) has {len(src_a.dataset)}")
    if want_kid and (src_b is None or "npz" in (src_a.kind, src_b.kind)):
        raise FIDError("--kid needs images for both A and B (an .npz holds only mu and sigma)")
    # Dimensions must agree before any heavy work starts.
    dims = {s.label: len(s.stats[0]) if s.kind == "npz" else FEATURE_DIM for s in sources}
    if len(set(dims.values())) > 1:
        detail = ", ".join(f"{s.label} ({s.path}) {dims[s.label]}-d" for s in sources)
        raise FIDError(f"the statistics have mismatched dimensions: {detail} (the FID Inception gives "
                       f"{FEATURE_DIM}-d features)")

    result = {"protocol": PROTOCOL, "inputs": {}}
    image_sources = [s for s in sources if s.kind != "npz"]
    net = None
    if image_sources:
        try:
            dev = resolve_device(device)
        except ValueError as e:
            raise FIDError(str(e)) from None
        try:
            net = InceptionV3FID(weights=inception).to(dev)
        except InceptionWeightsError as e:
            raise FIDError(str(e)) from None
        result["device"] = str(dev)
    features, logits = {}, {}
    for s in sources:
        info = {"path": str(s.path), "kind": s.kind}
        if s.kind != "npz":
            keep_logits = want_is and s.label == "A"
            with _progress_bar(f"{s.label}: Inception features", len(s.dataset), progress) as bar:
                try:
                    stats, features[s.label], logits[s.label] = extract_features(
                        net, s.dataset, batch_size=batch, num_workers=0 if s.kind == "checkpoint" else workers,
                        progress=bar.update,
                        keep_features=want_kid, keep_logits=keep_logits)
                except (ImageReadError, DatasetError) as e:
                    raise FIDError(f"{s.label}: {_one_line(e)}") from None
            s.stats = stats.stats()
            info["images"] = stats.n
        result["inputs"][s.label] = info

    if save_stats_path:
        save_stats(save_stats_path, *src_a.stats)
        result["saved_stats"] = str(save_stats_path)
    if want_is:
        mean, std = inception_score(logits["A"], splits=splits)
        result["is"] = {"mean": mean, "std": std, "splits": splits, "of": "A"}
    if want_kid:
        m = min(kid_subset_size, len(features["A"]), len(features["B"]))
        mean, std = kernel_inception_distance(features["A"], features["B"], num_subsets=kid_subsets,
                                              subset_size=kid_subset_size, device=result["device"])
        result["kid"] = {"mean": mean, "std": std, "subsets": kid_subsets, "subset_size": m}
    if src_b is not None:
        result["fid"] = frechet_distance(*src_a.stats, *src_b.stats)
    return result


def format_text(result):
    """The human-readable lines: inputs, protocol, then IS, KID and FID (FID last)."""
    lines = [f"{label}: {info['path']} ({info['kind']}" + (f", {info['images']} images)" if "images" in info else ")")
             for label, info in result["inputs"].items()]
    lines.append(f"Protocol: {result['protocol']}")
    if "saved_stats" in result:
        lines.append(f"Saved statistics of A to {result['saved_stats']}")
    if "is" in result:
        r = result["is"]
        lines.append(f"IS: {r['mean']:.6g} ± {r['std']:.6g} (of A, {r['splits']} splits)")
    if "kid" in result:
        r = result["kid"]
        lines.append(f"KID: {r['mean']:.6g} ± {r['std']:.6g} ({r['subsets']} subsets of {r['subset_size']})")
    if "fid" in result:
        lines.append(f"FID: {result['fid']}")
    return lines
