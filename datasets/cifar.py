"""Readers of the files users of the conventional-GAN papers already have: CIFAR-10's python
batches (torchvision's ``cifar-10-batches-py``: the 50k training images) and STL-10's binary
folder (``stl10_binary``: the 100k unlabeled images plus the 5k train images, as AutoGAN and
alphaGAN train on). ``prepare-data --from cifar10|stl10 PATH`` feeds them to ``prepare_data``
through ``ArrayImageSource``, so resizing (STL-10 to 48 px), storage and the summary are the
ones of every other source.

CIFAR batches are pickles; they are read with an unpickler that only builds numpy arrays,
lists, dicts and strings, so a crafted file cannot run code.
"""
import io
import os
import pickle
from pathlib import Path

import numpy as np

from .errors import DatasetError

CIFAR10_FOLDER = "cifar-10-batches-py"
CIFAR10_TRAIN = tuple(f"data_batch_{i}" for i in range(1, 6))
CIFAR10_SHAPE = (3, 32, 32)
STL10_FOLDER = "stl10_binary"
STL10_TRAIN = ("unlabeled_X.bin", "train_X.bin")  # AutoGAN's "train+unlabeled" split, 105k images
STL10_SHAPE = (3, 96, 96)
SOURCES = ("cifar10", "stl10")

# what a CIFAR batch pickle needs: numpy's array reconstruction (numpy 1 and 2 module names)
# and, for protocol-2 pickles written by Python 3, codecs.encode for the raw bytes
_ALLOWED = {("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
            ("numpy", "ndarray"), ("numpy", "dtype"), ("_codecs", "encode"),
            ("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar")}


class _ArrayUnpickler(pickle.Unpickler):
    def find_class(self, module, name):
        if (module, name) in _ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refusing to load {module}.{name} (a CIFAR batch holds only arrays)")


def _find_folder(path, folder, members):
    """``path`` itself when it holds ``members``, else ``path/folder`` (users pass either)."""
    path = Path(path)
    for candidate in (path, path / folder):
        if candidate.is_dir() and any((candidate / m).is_file() for m in members):
            return candidate
    raise DatasetError(f"{path}: expected the folder {folder!r} (or its parent) holding "
                       f"{', '.join(members)}; none of them found")


def read_cifar10_batch(path):
    """One CIFAR-10 python batch -> uint8 array [N, 32, 32, 3]."""
    try:
        with open(path, "rb") as f:
            batch = _ArrayUnpickler(f, encoding="bytes").load()
        data = batch[b"data"] if b"data" in batch else batch["data"]
        data = np.asarray(data)
    except (pickle.UnpicklingError, EOFError, KeyError, TypeError, AttributeError, ValueError, IndexError) as error:
        raise DatasetError(f"{path}: not a CIFAR-10 python batch (a pickled dict with a 'data' array): "
                           f"{error}") from None
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != int(np.prod(CIFAR10_SHAPE)):
        raise DatasetError(f"{path}: 'data' must be a uint8 array [N, 3072] (32x32 RGB planes), "
                           f"got {data.dtype} {list(data.shape)}")
    return data.reshape(-1, *CIFAR10_SHAPE).transpose(0, 2, 3, 1)


def read_stl10_binary(path):
    """One STL-10 ``*_X.bin`` -> uint8 array [N, 96, 96, 3] (a memory map: nothing read up front).
    The file stores each image as three 96x96 planes in column-major order."""
    size = os.path.getsize(path)
    per_image = int(np.prod(STL10_SHAPE))
    if size == 0 or size % per_image:
        raise DatasetError(f"{path}: {size} bytes is not a whole number of 3x96x96 STL-10 images "
                           f"({per_image} bytes each)")
    planes = np.memmap(path, dtype=np.uint8, mode="r").reshape(-1, *STL10_SHAPE)
    return planes.transpose(0, 3, 2, 1)  # [N, C, W, H] in memory -> [N, H, W, C]


class ArrayImageSource:
    """Images held in array files, with the interface of ``ImageSource`` (``names``, ``read``,
    ``ignored``): ``read`` returns a PPM (raw RGB with a short header), which ``prepare_data``
    decodes like any other file. Arrays are opened lazily in each process."""

    def __init__(self, kind, path):
        if kind not in SOURCES:
            raise DatasetError(f"--from must be one of {', '.join(SOURCES)}, got {kind!r}")
        self.kind, self.path = kind, str(path)
        if kind == "cifar10":
            folder = _find_folder(path, CIFAR10_FOLDER, CIFAR10_TRAIN)
            missing = [m for m in CIFAR10_TRAIN if not (folder / m).is_file()]
            if missing:
                raise DatasetError(f"{folder}: the CIFAR-10 training set is incomplete: missing {', '.join(missing)}")
            self.files = [str(folder / m) for m in CIFAR10_TRAIN]
        else:
            folder = _find_folder(path, STL10_FOLDER, STL10_TRAIN)
            self.files = [str(folder / m) for m in STL10_TRAIN if (folder / m).is_file()]
        self._arrays = None
        arrays = self._load()  # validates every file now, before an output is created
        self.names = [f"{Path(f).name}/{i:06d}" for f in self.files for i in range(len(arrays[Path(f).name]))]
        self.ignored = 0

    def __len__(self):
        return len(self.names)

    def _load(self):
        if self._arrays is None or self._arrays[0] != os.getpid():
            reader = read_cifar10_batch if self.kind == "cifar10" else read_stl10_binary
            self._arrays = (os.getpid(), {Path(f).name: reader(f) for f in self.files})
        return self._arrays[1]

    def image(self, name):
        """uint8 [H, W, 3] array of one image."""
        file, index = name.rsplit("/", 1)
        return self._load()[file][int(index)]

    def read(self, name):
        image = np.ascontiguousarray(self.image(name))
        h, w, _ = image.shape
        buf = io.BytesIO()
        buf.write(f"P6\n{w} {h}\n255\n".encode())
        buf.write(image.tobytes())
        return buf.getvalue()

    def __getstate__(self):
        return {**self.__dict__, "_arrays": None}
