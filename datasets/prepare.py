"""prepare_data: a folder or .zip of images -> an LMDB of square images at one or more sizes."""
import collections
import concurrent.futures
import contextlib
import os
import signal
import time
import warnings

from PIL import UnidentifiedImageError

from stylenas import __version__
from stylenas.runs import ProgressLine, die_with_parent

from .errors import DatasetError
from .images import FILTERS, FORMATS, ImageSource, encode_image, load_image, resize_center_crop
from .cifar import ArrayImageSource
from .store import LMDBWriter


def process_image(source, name, sizes, resample, image_format, quality):
    """Decode, convert to RGB, resize + centre-crop and encode one image at every size.
    Returns ({size: bytes}, short side of the source), or a string saying why the file was skipped."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # PIL's warnings about odd files: the image is used or skipped
            img = load_image(source.read(name))
            return {s: encode_image(resize_center_crop(img, s, resample), image_format, quality)
                    for s in sizes}, min(img.size)
    except UnidentifiedImageError:
        return "not an image PIL can identify"
    except Exception as error:  # any decoder failure means "unreadable": skip, count, report
        return f"{type(error).__name__}: {error}".strip()


_job = None  # (source, sizes, resample, format, quality) of this worker process


def _init_worker(job):
    global _job
    _job = job


def _init_pool_worker(job, parent):
    # A worker dies with the main process, however that one dies (an OOM kill included): an orphan
    # would hold its memory and the deleted temporary LMDB open forever
    die_with_parent(parent)
    # Ctrl-C reaches the whole process group; only the main process handles it (it cancels the
    # rest and waits for the chunks in flight), so workers do not print tracebacks of their own
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _init_worker(job)


def _work(name):
    return name, process_image(_job[0], name, *_job[1:])


def _work_chunk(names):
    return [_work(name) for name in names]


def default_workers():
    return min(8, os.cpu_count() or 1)


@contextlib.contextmanager
def _results(job, names, workers):
    """(name, result) in the order of ``names``, computed in ``workers`` processes (1: in this one).

    A ProcessPoolExecutor, not a multiprocessing.Pool: when the system kills a worker (out of
    memory, a crash in a decoder) the Pool replaces it and waits forever for the lost task, whereas
    the executor fails every pending task with BrokenProcessPool, which ends the run here with a
    DatasetError. The pool is torn down on any exit, also KeyboardInterrupt."""
    if workers == 1:
        _init_worker(job)
        yield map(_work, names)
        return
    pool = concurrent.futures.ProcessPoolExecutor(workers, initializer=_init_pool_worker,
                                                 initargs=(job, os.getpid()))
    try:
        yield _ordered(pool, names, chunk=max(1, min(16, len(names) // (8 * workers))), window=4 * workers)
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def _ordered(pool, names, chunk, window):
    """Results of ``names`` in order, at most ``window`` chunks in flight (chunks keep inter-process
    traffic low; the window bounds the encoded images waiting in memory for the writer)."""
    starts = iter(range(0, len(names), chunk))
    pending = collections.deque()
    while True:
        for start in starts:
            pending.append((start, pool.submit(_work_chunk, names[start:start + chunk])))
            if len(pending) >= window:
                break
        if not pending:
            return
        start, future = pending.popleft()
        try:
            yield from future.result()
        except concurrent.futures.process.BrokenProcessPool:
            raise DatasetError(
                f"a worker process ended abruptly after {start} of {_files(len(names))} were prepared (killed "
                f"by the system, e.g. out of memory, or crashed in an image decoder); nothing was written. "
                f"If memory is short, retry with fewer --workers") from None


class _NoBar:
    def update(self, n):
        pass


def progress_bar(enabled, length, label):
    """A click progress bar on stderr (a plain line every 30 s off a terminal, see
    stylenas.runs.ProgressLine), or a stand-in that shows nothing."""
    if enabled:
        return ProgressLine(length, label, unit="images")
    return contextlib.nullcontext(_NoBar())


def parse_sizes(sizes):
    """(256, '512,1024') -> [256, 512, 1024]; rosinality's tool takes a comma list, we take both."""
    out = set()
    for item in sizes:
        for part in str(item).split(","):
            try:
                size = int(part)
            except ValueError:
                raise DatasetError(f"--size: expected positive integers, got {part!r}") from None
            if size < 1:
                raise DatasetError(f"--size: expected positive integers, got {size}")
            out.add(size)
    if not out:
        raise DatasetError("--size: give at least one size")
    return sorted(out)


def check_network_sizes(sizes):
    """Refuse sizes no network of the toolkit takes (before anything is written): StyleGAN2 needs a
    power of two >= 4, the conventional networks a multiple of 8 (CIFAR-10 32 px, STL-10 48 px)."""
    for size in parse_sizes(sizes):
        if not ((size >= 4 and size & (size - 1) == 0) or size % 8 == 0):
            raise DatasetError(f"--size {size}: expected a power of two >= 4 (StyleGAN2: 4, 8, ..., 1024) or a "
                               f"multiple of 8 (the conventional networks: 32, 48, ...)")


def prepare_data(src, out, sizes, resize_filter="lanczos", image_format="jpeg", quality=95, workers=None,
                 force=False, progress=True, source_format=None):
    """Write every readable image of ``src`` (folder searched recursively, or .zip; sorted paths) to
    the LMDB ``out`` at each size: short side resized with ``resize_filter``, centre square cropped,
    stored as JPEG (``quality``, 4:4:4) or PNG. Unreadable files are skipped and listed in the
    returned summary {count, sizes, skipped: [(name, reason)], upscaled, ignored, seconds,
    images_per_s}. ``workers``: processes decoding and resizing (default: CPU count, at most 8).
    ``source_format`` "cifar10" or "stl10": ``src`` is CIFAR-10's python batches or STL-10's
    binary folder instead (datasets/cifar.py)."""
    sizes = parse_sizes(sizes)
    workers = default_workers() if workers is None else workers
    if resize_filter not in FILTERS:
        raise DatasetError(f"--resize-filter must be one of {', '.join(FILTERS)}, got {resize_filter!r}")
    if image_format not in FORMATS:
        raise DatasetError(f"--format must be one of {', '.join(FORMATS)}, got {image_format!r}")
    if not 1 <= quality <= 100:
        raise DatasetError(f"--quality must be in 1..100, got {quality}")
    if workers < 1:
        raise DatasetError(f"--workers must be >= 1, got {workers}")
    # source_format "cifar10" / "stl10": the datasets' own array files (datasets/cifar.py)
    source = ArrayImageSource(source_format, src) if source_format else ImageSource(src)
    if not len(source):
        raise DatasetError(f"{src}: no image files found (expected png, jpg, webp, bmp, tif, ... files)")

    start = time.perf_counter()
    job = (source, sizes, FILTERS[resize_filter], image_format, quality)
    skipped, upscaled = [], 0
    with LMDBWriter(out, sizes, force=force) as writer:
        with _results(job, source.names, workers) as results, \
                progress_bar(progress, len(source), f"prepare {out}") as bar:
            for name, result in results:
                if isinstance(result, str):
                    skipped.append((name, result))
                else:
                    writer.add(result[0])
                    upscaled += result[1] < sizes[-1]
                bar.update(1)
        if writer.count == 0:
            raise DatasetError(f"{src}: no readable image among {_files(len(source))} "
                               f"(first failure: {skipped[0][0]}: {skipped[0][1]})")
        seconds = time.perf_counter() - start
        writer.close({"format": image_format, "quality": quality if image_format == "jpeg" else None,
                      "filter": resize_filter, "source": str(src), "skipped": len(skipped),
                      "stylenas": __version__})
    return {"out": str(out), "count": writer.count, "sizes": sizes, "skipped": skipped, "upscaled": upscaled,
            "ignored": source.ignored, "seconds": seconds, "images_per_s": writer.count / seconds}


def _files(n):
    return f"{n} file" if n == 1 else f"{n} files"


def summary_lines(summary, limit=20):
    """Human-readable lines for a prepare_data summary: counts first, then every skipped file
    (the first ``limit``), each with its reason."""
    s = summary
    lines = [f"wrote {s['count']} images at {', '.join(map(str, s['sizes']))} px to {s['out']} "
             f"in {s['seconds']:.1f} s ({s['images_per_s']:.1f} images/s)"]
    if s.get("upscaled"):
        lines.append(f"upscaled {_files(s['upscaled'])} whose short side is below {max(s['sizes'])} px")
    if s["ignored"]:
        lines.append(f"ignored {_files(s['ignored'])} (not an image by extension, or hidden)")
    if s["skipped"]:
        lines.append(f"skipped {_files(len(s['skipped']))} that could not be read:")
        lines += [f"  {name}: {reason}" for name, reason in s["skipped"][:limit]]
        if len(s["skipped"]) > limit:
            lines.append(f"  ... and {len(s['skipped']) - limit} more")
    return lines
