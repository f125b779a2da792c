"""Data benchmark: our LMDB reader against one written like rosinality's MultiResolutionDataset,
and prepare_data throughput; returns a JSON-able dict (scripts/bench_data.py prints it)."""
import io
import multiprocessing
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

import lmdb
import PIL
import torch
import torchvision
from PIL import Image
from torch.utils.data import DataLoader, Dataset
from torchvision import transforms

from .demo import make_demo_data, render
from .prepare import prepare_data
from .reader import LMDBImages
from .store import close_env, record_key


class RosinalityStyleDataset(Dataset):
    """The usual reader (rosinality's MultiResolutionDataset, rewritten): environment opened in
    ``__init__``, PIL decode and convert, then ToTensor + Normalize, i.e. float32 on the host."""

    def __init__(self, path, resolution):
        self.env = lmdb.open(str(path), max_readers=32, readonly=True, lock=False, readahead=False, meminit=False)
        with self.env.begin() as txn:
            self.length = int(txn.get(b"length").decode("utf-8"))
        self.resolution = resolution
        self.transform = transforms.Compose([
            transforms.RandomHorizontalFlip(), transforms.ToTensor(),
            transforms.Normalize((0.5, 0.5, 0.5), (0.5, 0.5, 0.5), inplace=True)])

    def __len__(self):
        return self.length

    def __getitem__(self, index):
        with self.env.begin() as txn:
            data = txn.get(record_key(self.resolution, index))
        return self.transform(Image.open(io.BytesIO(data)).convert("RGB"))


def loader_throughput(dataset, workers, batch, epochs=2):
    """Images per second through a shuffling DataLoader, timed from the second batch on (worker
    start-up excluded: it is paid once per training run)."""
    loader = DataLoader(dataset, batch_size=batch, shuffle=True, num_workers=workers, drop_last=True,
                        persistent_workers=workers > 0, generator=torch.Generator().manual_seed(0))
    count, start = 0, None
    for _ in range(epochs):
        for images in loader:
            if start is None:
                start = time.perf_counter()
                continue
            count += len(images)
    return count / (time.perf_counter() - start)


class _OursFloatOnHost(Dataset):
    """Our reader followed by the float conversion on the CPU, for a GPU-less comparison."""

    def __init__(self, images):
        self.images = images

    def __len__(self):
        return len(self.images)

    def __getitem__(self, index):
        return self.images[index].float().div_(127.5).sub_(1)


def _spin(n):
    x = 0
    for i in range(n):
        x += i
    return x


def parallel_speedup(n=3_000_000):
    """How much faster two processes do two equal pure-Python jobs than one process does one
    each: 2.0 on two free cores, 1.0 when only one core's worth of CPU is really available."""
    start = time.perf_counter()
    _spin(n)
    single = time.perf_counter() - start
    with multiprocessing.Pool(2) as pool:
        pool.map(_spin, [1000, 1000])  # start-up excluded
        start = time.perf_counter()
        pool.map(_spin, [n, n], chunksize=1)
        pair = time.perf_counter() - start
    return round(2 * single / pair, 2)


def run(size=256, num=512, batch=32, workers=(0, 1, 2), repeats=3, quality=95, prepare_num=96,
        prepare_workers=(1, 2), threads=1, tmpdir=None, log=print):
    """The benchmark; images are the procedural demo images (textured, shaded, with grain).
    ``threads``: torch intra-op threads of the main process (DataLoader workers always use 1). One
    is the stable choice on a small shared machine: a 2-thread parallel copy waits for a core that
    another process holds, which made single images cost milliseconds in our sandbox."""
    if threads:
        torch.set_num_threads(threads)
    result = {"machine": {"cpu_count": os.cpu_count(), "two_process_speedup": parallel_speedup(),
                          "platform": platform.platform(),
                          "python": platform.python_version(), "torch": torch.__version__,
                          "torchvision": torchvision.__version__, "pillow": PIL.__version__,
                          "torch_threads": torch.get_num_threads(), "load_average_before": os.getloadavg()},
              "config": {"size": size, "num": num, "batch": batch, "format": "jpeg", "quality": quality,
                         "repeats": repeats, "statistic": "median images/s"}}
    with tempfile.TemporaryDirectory(dir=tmpdir) as tmp:
        path = Path(tmp) / "bench.lmdb"
        log(f"rendering {num} demo images at {size} px")
        make_demo_data(path, [size], num, quality=quality, progress=False)
        ours = LMDBImages(path)
        result["config"]["mean_record_bytes"] = round(sum(len(ours.encoded(i)) for i in range(num)) / num)
        result["read"] = []
        for w in workers:
            a, b, c = [], [], []
            for _ in range(repeats):  # interleaved, so drifting machine load hits both alike
                close_env(path)  # py-lmdb allows one open environment per file and process
                theirs = RosinalityStyleDataset(path, size)
                a.append(loader_throughput(theirs, w, batch))
                theirs.env.close()
                ours = LMDBImages(path)
                b.append(loader_throughput(ours, w, batch))
                c.append(loader_throughput(_OursFloatOnHost(ours), w, batch))
            row = {"workers": w, "rosinality_style": round(statistics.median(a), 1),
                   "ours_uint8": round(statistics.median(b), 1),
                   "ours_then_float_on_cpu": round(statistics.median(c), 1)}
            row["speedup"] = round(row["ours_uint8"] / row["rosinality_style"], 2)
            log(f"read, {w} workers: {row}")
            result["read"].append(row)
        close_env(path)

        src = Path(tmp) / "src"
        src.mkdir()
        log(f"writing {prepare_num} JPEG sources at {2 * size} px")
        for i in range(prepare_num):
            Image.fromarray(render(1, i, size)).resize((2 * size, 2 * size), Image.Resampling.BICUBIC).save(
                src / f"{i:05d}.jpg", quality=95)
        result["prepare"] = []
        for w in prepare_workers:
            runs = [prepare_data(src, Path(tmp) / f"prep{w}.lmdb", [size], workers=w, force=True,
                                 progress=False)["images_per_s"] for _ in range(repeats)]
            row = {"workers": w, "source": f"{2 * size}x{2 * size} JPEG", "sizes": [size],
                   "images_per_s": round(statistics.median(runs), 1)}
            log(f"prepare: {row}")
            result["prepare"].append(row)
    result["machine"]["load_average_after"] = os.getloadavg()
    return result
