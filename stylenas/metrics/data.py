"""Images in, Inception features out: an image-folder dataset and the extraction loop."""
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from ..datasets.images import load_image
from ..datasets.loader import worker_init
from .stats import FeatureStats

__all__ = ["IMAGE_EXTENSIONS", "ImageFolder", "ImageReadError", "extract_features", "list_images"]

# pytorch-fid's list (matched here in any case: pytorch-fid's glob on Linux misses "X.PNG")
IMAGE_EXTENSIONS = (".bmp", ".jpg", ".jpeg", ".pgm", ".png", ".ppm", ".tif", ".tiff", ".webp")


class ImageReadError(OSError):
    """An image file cannot be decoded."""


class _Unreadable(NamedTuple):
    path: str
    reason: str


def _hidden(path, root):
    return any(part.startswith(".") for part in path.relative_to(root).parts)


def list_images(root, recursive=False):
    """The image files pytorch-fid would read from ``root``: the files directly inside it (every
    level below with ``recursive``) whose extension is in IMAGE_EXTENSIONS, sorted by path.
    Hidden files and folders (name starting with ".", such as macOS's "._x.png") are skipped."""
    root = Path(root)
    candidates = root.rglob("*") if recursive else root.iterdir()
    return sorted(p for p in candidates
                  if p.suffix.lower() in IMAGE_EXTENSIONS and not _hidden(p, root) and p.is_file())


class ImageFolder(Dataset):
    """The images of ``list_images(root, recursive)`` as uint8 RGB tensors [3, H, W].

    Decoded by ``stylenas.datasets.images.load_image``, the function ``prepare_data`` decodes
    with, so a folder gives the same pixels to both commands: the EXIF orientation is applied,
    grey, palette, CMYK and 16-bit images become 8-bit RGB, and alpha is composited on white
    (pytorch-fid drops alpha, keeping whatever colour lies under transparent pixels).
    An unreadable file yields a marker that `extract_features` turns into an ImageReadError
    naming the file, so the error does not arrive wrapped in a worker traceback.
    """

    def __init__(self, root, recursive=False):
        self.root = Path(root)
        self.files = list_images(self.root, recursive)

    def __len__(self):
        return len(self.files)

    def __getitem__(self, index):
        path = self.files[index]
        try:
            array = np.asarray(load_image(path.read_bytes()))
        except Exception as e:
            return _Unreadable(str(path), f"{type(e).__name__}: {e}")
        return torch.from_numpy(array.copy()).permute(2, 0, 1).contiguous()


def _keep_list(batch):
    return batch


def _same_size_runs(images):
    """Split a list of [3, H, W] tensors into stacked runs of equal size, keeping the order."""
    run = [images[0]]
    for image in images[1:]:
        if image.shape != run[0].shape:
            yield torch.stack(run)
            run = []
        run.append(image)
    yield torch.stack(run)


def extract_features(net, dataset, batch_size=50, num_workers=0, progress=None, keep_features=False,
                     keep_logits=False, image_sizes=None):
    """Run the FID Inception over a dataset of uint8 images [3, H, W] (sizes may differ).

    Returns (FeatureStats, features [N, 2048] float32 CPU or None, unbiased logits [N, 1008]
    float32 CPU or None), in dataset order. `progress(n)` is called after each batch;
    `image_sizes` (a collections.Counter) counts the (width, height) of the images seen.
    Statistics accumulate in float64 on the network's device, chunk by chunk.
    """
    device = next(net.parameters()).device
    loader = DataLoader(dataset, batch_size=batch_size, num_workers=num_workers, collate_fn=_keep_list,
                        pin_memory=device.type == "cuda", persistent_workers=False,
                        worker_init_fn=worker_init(num_workers))
    stats, features, logits = FeatureStats(), [], []
    for batch in loader:
        for item in batch:
            if isinstance(item, _Unreadable):
                raise ImageReadError(f"{item.path}: cannot read the image ({item.reason})")
        for images in _same_size_runs(batch):
            if image_sizes is not None:
                image_sizes[(images.shape[3], images.shape[2])] += len(images)
            out = net(images)
            stats.update(out.features)
            if keep_features:
                features.append(out.features.cpu())
            if keep_logits:
                logits.append(out.logits_unbiased.cpu())
        if progress is not None:
            progress(len(batch))
    return (stats, torch.cat(features) if keep_features else None, torch.cat(logits) if keep_logits else None)
