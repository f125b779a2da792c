"""Images in, Inception features out: an image-folder dataset and the extraction loop."""
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset

from .stats import FeatureStats

__all__ = ["IMAGE_EXTENSIONS", "ImageFolder", "ImageReadError", "extract_features"]

# pytorch-fid's list, matched case-insensitively.
IMAGE_EXTENSIONS = (".bmp", ".jpg", ".jpeg", ".pgm", ".png", ".ppm", ".tif", ".tiff", ".webp")


class ImageReadError(OSError):
    """An image file cannot be decoded."""


class _Unreadable(NamedTuple):
    path: str
    reason: str


class ImageFolder(Dataset):
    """All images under `root` (recursive, sorted by path) as uint8 RGB tensors [3, H, W].

    Grey, palette and RGBA files are converted to RGB (alpha dropped), as pytorch-fid does.
    An unreadable file yields a marker that `extract_features` turns into an ImageReadError
    naming the file, so the error does not arrive wrapped in a worker traceback.
    """

    def __init__(self, root):
        self.root = Path(root)
        self.files = sorted(p for p in self.root.rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file())

    def __len__(self):
        return len(self.files)

    def __getitem__(self, index):
        path = self.files[index]
        try:
            with Image.open(path) as image:
                array = np.array(image.convert("RGB"))
        except Exception as e:
            return _Unreadable(str(path), f"{type(e).__name__}: {e}")
        return torch.from_numpy(array).permute(2, 0, 1).contiguous()


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
                     keep_logits=False):
    """Run the FID Inception over a dataset of uint8 images [3, H, W] (sizes may differ).

    Returns (FeatureStats, features [N, 2048] float32 CPU or None, unbiased logits [N, 1008]
    float32 CPU or None), in dataset order. `progress(n)` is called after each batch.
    Statistics accumulate in float64 on the network's device, chunk by chunk.
    """
    device = next(net.parameters()).device
    loader = DataLoader(dataset, batch_size=batch_size, num_workers=num_workers, collate_fn=_keep_list,
                        pin_memory=device.type == "cuda", persistent_workers=False)
    stats, features, logits = FeatureStats(), [], []
    for batch in loader:
        for item in batch:
            if isinstance(item, _Unreadable):
                raise ImageReadError(f"{item.path}: cannot read the image ({item.reason})")
        for images in _same_size_runs(batch):
            out = net(images)
            stats.update(out.features)
            if keep_features:
                features.append(out.features.cpu())
            if keep_logits:
                logits.append(out.logits_unbiased.cpu())
        if progress is not None:
            progress(len(batch))
    return (stats, torch.cat(features) if keep_features else None, torch.cat(logits) if keep_logits else None)
