"""The logic behind scripts/fid.py: resolve inputs, extract features, compute FID / IS / KID.

Every input problem ends as one `FIDError` with a one-line message naming the input; the
script prints it as `Error: ...` and exits non-zero.
"""
import sys
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import click
import torch

from ..datasets import DatasetError, LMDBImages
from ..devices import resolve_device
from .data import IMAGE_EXTENSIONS, ImageFolder, ImageReadError, extract_features, list_images
from .frechet import frechet_distance
from .inception import WEIGHTS_FILE, InceptionV3FID, InceptionWeightsError
from .prdc import DC_K, PR_K, prdc
from .scores import inception_score, kernel_inception_distance
from .stats import StatsFileError, check_stats_path, load_stats, save_stats, stats_count

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
    stats: tuple = None  # (mu, sigma), for npz, and for the others once extracted
    images: int = None  # images behind the statistics (None: an .npz that does not record it)
    available: int = None  # images in the folder or LMDB before --num / --num-ref
    resolution: int = None  # the LMDB size read
    stored: list = None  # every size the LMDB holds
    sizes: Counter = field(default_factory=Counter)  # (width, height) -> images seen


def _open_lmdb(label, path, resolution):
    try:
        return LMDBImages(str(path), resolution=resolution)
    except DatasetError as e:  # names the file already
        raise FIDError(f"{label}: {_one_line(e)}" + (" (--resolution)" if "is not stored" in str(e) else "")) from None
    except Exception as e:
        raise FIDError(f"{label}: {path}: cannot open it as an image LMDB ({type(e).__name__}: "
                       f"{_one_line(e)})") from None


def _open_checkpoint(label, path, limit, device="auto", trunc=1.0):
    """A generator checkpoint as an image source: `limit` quantised images of its G_ema."""
    from ..train.generate import checkpoint_images

    try:
        images = checkpoint_images(path, limit, device, trunc, num_option="--num" if label == "A" else "--num-ref")
        return Source(label, path, "checkpoint", dataset=images)
    except ValueError as e:
        raise FIDError(f"{label}: {e}") from None


def _one_line(error):
    """The message of `error` on one line; a DataLoader worker's re-raise carries the whole
    worker traceback, whose last line is "module.Class: message"."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    last = lines[-1] if lines else type(error).__name__
    prefix = f"{type(error).__module__}.{type(error).__qualname__}: "
    return last[len(prefix):] if last.startswith(prefix) else last


def _is_lmdb(path):
    return path.suffix.lower() == ".lmdb" or (path.is_dir() and (path / "data.mdb").is_file())


def open_source(label, path, limit=None, limit_option="--num", resolution=None, recursive=False, log=None,
                device="auto", trunc=1.0):
    """Classify and open input `path` (image folder, LMDB, .npz statistics, generator checkpoint)
    without computing anything.

    `limit`: use the first `limit` images (`limit_option` names the option in messages);
    `resolution`: the LMDB size to read (None: the largest); `recursive`: a folder's subfolders too;
    `device`: where a checkpoint's generator runs; `trunc`: its truncation psi."""
    path = Path(path)
    if not path.exists():
        raise FIDError(f"{label}: {path} does not exist (expected an image folder, an .lmdb, an .npz of "
                       f"statistics or a generator checkpoint)")
    if path.suffix.lower() == ".npz":
        if limit is not None:
            raise FIDError(f"{limit_option}: {label} ({path}) is a statistics file; the images behind it "
                           f"cannot be limited")
        try:
            return Source(label, path, "npz", stats=load_stats(path), images=stats_count(path))
        except StatsFileError as e:
            raise FIDError(f"{label}: {e}") from None
    if path.suffix.lower() in CHECKPOINT_SUFFIXES and path.is_file():
        source = _open_checkpoint(label, path, limit, device, trunc)
    elif _is_lmdb(path):
        dataset = _open_lmdb(label, path, resolution)
        source = Source(label, path, "lmdb", dataset=dataset, resolution=dataset.resolution, stored=dataset.sizes)
    elif path.is_dir():
        source = Source(label, path, "folder", dataset=ImageFolder(path, recursive=recursive))
        if len(source.dataset) == 0:
            exts = ", ".join(IMAGE_EXTENSIONS)
            deeper = 0 if recursive else len(list_images(path, recursive=True))
            if deeper:
                raise FIDError(f"{label}: {path}: no images ({exts}) directly inside it, {deeper} in its "
                               f"subfolders: add --recursive to read those")
            raise FIDError(f"{label}: {path}: no images ({exts}) found")
    else:
        raise FIDError(f"{label}: {path}: not an image folder, an .lmdb, an .npz of statistics or a generator "
                       f"checkpoint")
    source.available = len(source.dataset)
    if source.available == 0:
        raise FIDError(f"{label}: {path}: no images found")
    if limit is not None:
        if source.available < limit and log is not None:
            log(f"Warning: {label}: {path} has {source.available} images, fewer than {limit_option} {limit}; "
                f"using all of them")
        source.dataset = torch.utils.data.Subset(source.dataset, range(min(limit, source.available)))
    source.images = len(source.dataset)
    if source.images < 2:
        raise FIDError(f"{label}: {path}: statistics need at least 2 images, found {source.images}")
    return source


def _size_text(size):
    return f"{size[0]}x{size[1]}"


def _resolution(source):
    """'WxH' of an image input, 'mixed' for a folder of several sizes, None when unknown (npz, or a
    folder not read yet)."""
    if source.kind == "lmdb":
        return _size_text((source.resolution, source.resolution))
    if len(source.sizes) > 1:
        return "mixed"
    return _size_text(next(iter(source.sizes))) if source.sizes else None


def _resolution_warning(a, b):
    ra, rb = _resolution(a), _resolution(b)
    if None in (ra, rb) or "mixed" in (ra, rb) or ra == rb:
        return None
    hint = " (--resolution picks an .lmdb's size)" if "lmdb" in (a.kind, b.kind) else ""
    return (f"Warning: A is {ra} and B is {rb}: both are resized to 299x299 for the network, but images "
            f"of different resolutions give an FID that is not comparable with published ones{hint}")


def _progress_bar(label, length, show):
    """A bar on a terminal, a plain line every 30 s elsewhere (stylenas.runs.ProgressLine)."""
    from ..runs import ProgressLine

    return ProgressLine(length, label, unit="images", file=sys.stderr if show else _Null())


class _Null:
    def write(self, _):
        pass

    def flush(self):
        pass

    def isatty(self):
        return False


def evaluate(a, b=None, num=None, num_ref=None, resolution=None, recursive=False, batch=50, device="auto",
             workers=4, inception=None, save_stats_path=None, want_is=False, want_kid=False, splits=10,
             kid_subsets=100, kid_subset_size=1000, progress=True, log=None, trunc=1.0, want_prdc=False):
    """FID of A against B (and IS of A, KID of A vs B), as a JSON-ready dict.

    `a`, `b`: image folder, LMDB or .npz paths (b may be None when only statistics or the IS
    of A are wanted). `num` limits A to its first images, `num_ref` limits B (default: all of B,
    NVlabs' fid50k_full convention). `resolution`: the size read from LMDB inputs (default: the
    largest each holds). `recursive`: folders' subfolders too. `save_stats_path` writes A's
    statistics; `want_prdc` adds precision, recall (k = 3), density and coverage (k = 5) of A
    against reference B on the same pool features (B must be images: an .npz holds no features).
    The path of --save-stats is checked before any work, and a failure to write it afterwards is
    reported in result["save_stats_error"] with every result kept. `log(line)` receives warnings.
    Raises FIDError for every user-facing problem.
    """
    log = log or (lambda line: click.echo(line, err=True))
    if batch < 1:
        raise FIDError(f"--batch must be at least 1, got {batch}")
    for option, value in (("--num", num), ("--num-ref", num_ref)):
        if value is not None and value < 2:
            raise FIDError(f"{option} must be at least 2, got {value}")
    if resolution is not None and resolution < 1:
        raise FIDError(f"--resolution must be a positive size, got {resolution}")
    if b is None and not (save_stats_path or want_is):
        raise FIDError("give a second input B to compare with, or --save-stats / --is for A alone")
    if b is None and num_ref is not None:
        raise FIDError("--num-ref limits the second input B, and none was given")
    if save_stats_path:
        try:
            check_stats_path(save_stats_path)
        except StatsFileError as e:
            raise FIDError(f"--save-stats: {e}") from None
    warnings = []

    def warn(line):
        warnings.append(line)
        log(line)

    sources = [open_source("A", a, num, "--num", resolution, recursive, warn, device, trunc)]
    if b is not None:
        sources.append(open_source("B", b, num_ref, "--num-ref", resolution, recursive, warn, device, trunc))
    src_a, src_b = sources[0], (sources[1] if b is not None else None)
    if resolution is not None and not any(s.kind == "lmdb" for s in sources):
        raise FIDError(f"--resolution {resolution} selects a size stored in an .lmdb input, and no input is one")
    if want_is and src_a.kind == "npz":
        raise FIDError(f"--is: A ({src_a.path}) is a statistics file; the Inception Score needs images")
    if want_is and len(src_a.dataset) < splits:
        raise FIDError(f"--is: the Inception Score uses {splits} splits and needs at least {splits} images; "
                       f"A ({src_a.path}) has {len(src_a.dataset)}")
    if want_kid and (src_b is None or "npz" in (src_a.kind, src_b.kind)):
        raise FIDError("--kid needs images for both A and B (an .npz holds only mu and sigma)")
    if want_prdc and src_b is None:
        raise FIDError("--prdc evaluates A against a reference B: give B (an image folder, an .lmdb or a checkpoint)")
    if want_prdc and "npz" in (src_a.kind, src_b.kind):
        stats_file = src_a if src_a.kind == "npz" else src_b
        raise FIDError(f"--prdc: {stats_file.label} ({stats_file.path}) is a statistics file; precision, recall, "
                       f"density and coverage need every image's features (give the images instead)")
    if want_prdc and min(len(src_a.dataset), len(src_b.dataset)) <= DC_K:
        raise FIDError(f"--prdc: the k = {DC_K} nearest neighbours need more than {DC_K} images in A and in B, "
                       f"got {len(src_a.dataset)} and {len(src_b.dataset)}")
    # Dimensions must agree before any heavy work starts.
    dims = {s.label: len(s.stats[0]) if s.kind == "npz" else FEATURE_DIM for s in sources}
    if len(set(dims.values())) > 1:
        detail = ", ".join(f"{s.label} ({s.path}) {dims[s.label]}-d" for s in sources)
        raise FIDError(f"the statistics have mismatched dimensions: {detail} (the FID Inception gives "
                       f"{FEATURE_DIM}-d features)")
    early = src_b is not None and src_a.kind == src_b.kind == "lmdb"
    if early and _resolution_warning(src_a, src_b):  # known now: say it before the work
        warn(_resolution_warning(src_a, src_b))

    result = {"protocol": PROTOCOL, "inputs": {}}
    image_sources = [s for s in sources if s.kind != "npz"]
    net = None
    if image_sources:
        try:
            dev = resolve_device(device)
        except ValueError as e:
            raise FIDError(str(e)) from None
        if dev.type == "cuda" and dev.index is None:
            dev = torch.device("cuda", torch.cuda.current_device())
        try:
            net = InceptionV3FID(weights=inception).to(dev)
        except InceptionWeightsError as e:
            raise FIDError(str(e)) from None
        result["device"] = str(dev)
        if dev.type == "cuda":
            result["device_name"] = torch.cuda.get_device_name(dev)
    features, logits = {}, {}
    for s in sources:
        if s.kind != "npz":
            keep_logits = want_is and s.label == "A"
            with _progress_bar(f"{s.label}: Inception features", len(s.dataset), progress) as bar:
                try:
                    stats, features[s.label], logits[s.label] = extract_features(
                        net, s.dataset, batch_size=batch, num_workers=0 if s.kind == "checkpoint" else workers,
                        progress=bar.update,
                        keep_features=want_kid or want_prdc, keep_logits=keep_logits, image_sizes=s.sizes)
                except (ImageReadError, DatasetError) as e:
                    raise FIDError(f"{s.label}: {_one_line(e)}") from None
            s.stats = stats.stats()
        result["inputs"][s.label] = _describe(s)
    if src_b is not None and not early and _resolution_warning(src_a, src_b):
        warn(_resolution_warning(src_a, src_b))

    if want_is:
        mean, std = inception_score(logits["A"], splits=splits)
        result["is"] = {"mean": mean, "std": std, "splits": splits, "of": "A"}
    if want_kid:
        m = min(kid_subset_size, len(features["A"]), len(features["B"]))
        mean, std = kernel_inception_distance(features["A"], features["B"], num_subsets=kid_subsets,
                                              subset_size=kid_subset_size, device=result["device"])
        result["kid"] = {"mean": mean, "std": std, "subsets": kid_subsets, "subset_size": m}
    if want_prdc:
        result.update(prdc(features["A"], features["B"], device=result["device"]))
        result["prdc"] = {"k_precision_recall": PR_K, "k_density_coverage": DC_K, "of": "A", "reference": "B"}
    if src_b is not None:
        result["fid"] = frechet_distance(*src_a.stats, *src_b.stats)
    if save_stats_path:  # last: a failure here must not cost the numbers above
        try:
            save_stats(save_stats_path, *src_a.stats, n=src_a.images)
            result["saved_stats"] = str(save_stats_path)
        except (OSError, StatsFileError) as e:
            reason = e.strerror if isinstance(e, OSError) and e.strerror else str(e)
            result["save_stats_error"] = f"could not write {save_stats_path}: {reason}"
    if warnings:
        result["warnings"] = warnings
    return result


def _describe(s):
    """The JSON record of one input."""
    info = {"path": str(s.path), "kind": s.kind, "images": s.images}
    if s.kind != "npz":
        info["available"] = s.available
        info["resolution"] = _resolution(s)
        info["image_sizes"] = {_size_text(size): n for size, n in sorted(s.sizes.items())}
    if s.kind == "lmdb":
        info["stored_resolutions"] = s.stored
    return info


def _input_line(label, info):
    if info["kind"] == "npz":
        count = "image count not recorded" if info["images"] is None else f"statistics of {info['images']} images"
        return f"{label}: {info['path']} (npz, {count})"
    count = (f"{info['images']} images" if info["images"] == info["available"]
             else f"first {info['images']} of {info['available']} images")
    if info["resolution"] == "mixed":
        sizes = ", ".join(f"{size} ({n})" for size, n in list(info["image_sizes"].items())[:4])
        more = ", ..." if len(info["image_sizes"]) > 4 else ""
        where = f"mixed sizes: {sizes}{more}"
    else:
        where = f"{info['resolution']}"
    if info["kind"] == "lmdb":
        where += f" of stored {', '.join(map(str, info['stored_resolutions']))}"
    return f"{label}: {info['path']} ({info['kind']}, {count}, {where})"


def format_text(result):
    """The human-readable lines: inputs with their image counts and sizes, device, protocol, then
    IS, KID and FID (FID last)."""
    lines = [_input_line(label, info) for label, info in result["inputs"].items()]
    if "device" in result:
        name = f" ({result['device_name']})" if "device_name" in result else ""
        lines.append(f"Device: {result['device']}{name}")
    lines.append(f"Protocol: {result['protocol']}")
    if "saved_stats" in result:
        lines.append(f"Saved statistics of A to {result['saved_stats']}")
    if "is" in result:
        r = result["is"]
        lines.append(f"IS: {r['mean']:.6g} ± {r['std']:.6g} (of A, {r['splits']} splits)")
    if "kid" in result:
        r = result["kid"]
        lines.append(f"KID: {r['mean']:.6g} ± {r['std']:.6g} ({r['subsets']} subsets of {r['subset_size']})")
    if "prdc" in result:
        k = result["prdc"]
        lines.append(f"Precision: {result['precision']:.6g}, Recall: {result['recall']:.6g} (k = "
                     f"{k['k_precision_recall']}); Density: {result['density']:.6g}, Coverage: "
                     f"{result['coverage']:.6g} (k = {k['k_density_coverage']}; A against reference B)")
    if "fid" in result:
        lines.append(f"FID: {result['fid']}")
    return lines
