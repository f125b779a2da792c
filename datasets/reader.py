"""LMDBImages: uint8 image tensors from an LMDB written by prepare_data.py or by rosinality's tool."""
import torch

from .errors import DatasetError
from .images import decode
from .store import describe, open_env, record_key


class LMDBImages(torch.utils.data.Dataset):
    """Images of one resolution as uint8 tensors [3, H, W] (``transform`` applied after decoding).

    ``resolution=None`` picks the largest stored. The environment is opened lazily, once per
    process and file (see ``store.open_env``), so the dataset pickles, works in DataLoader workers
    under fork and spawn, and several datasets may share one file in a process.
    Attributes: ``length``, ``sizes``, ``resolution``, ``meta`` (our metadata; {} for rosinality's)."""

    def __init__(self, path, resolution=None, transform=None):
        self.path, self.transform = str(path), transform
        self.length, self.sizes, self.meta = describe(self.path)
        if resolution is None:
            resolution = self.sizes[-1]
        if resolution not in self.sizes:
            stored = ", ".join(map(str, self.sizes))
            raise DatasetError(f"{self.path}: resolution {resolution} is not stored; it holds {stored}")
        self.resolution = int(resolution)

    def __len__(self):
        return self.length

    def _index(self, index):
        index = int(index)
        if index < 0:
            index += self.length
        if not 0 <= index < self.length:
            raise IndexError(f"index {index} out of range for {self.length} images in {self.path}")
        return index

    def encoded(self, index):
        """The stored (encoded) bytes of image ``index``."""
        index = self._index(index)
        key = record_key(self.resolution, index)
        with open_env(self.path).begin() as txn:
            data = txn.get(key)
        if data is None:
            raise DatasetError(f"{self.path}: record '{key.decode()}' (index {index}) is missing")
        return data

    def __getitem__(self, index):
        index = self._index(index)
        try:
            img = decode(self.encoded(index))
        except ValueError as error:
            if isinstance(error, DatasetError):
                raise
            key = record_key(self.resolution, index).decode()
            raise DatasetError(f"{self.path}: record '{key}' (index {index}) is corrupt: {error}") from None
        if img.shape[1:] != (self.resolution, self.resolution):
            raise DatasetError(f"{self.path}: record '{record_key(self.resolution, index).decode()}' "
                               f"(index {index}) is {img.shape[2]}x{img.shape[1]}, expected "
                               f"{self.resolution}x{self.resolution}")
        return self.transform(img) if self.transform is not None else img

    def __repr__(self):
        return f"LMDBImages({self.path!r}, resolution={self.resolution}, length={self.length}, sizes={self.sizes})"
