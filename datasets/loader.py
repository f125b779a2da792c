"""Training loader: endless shuffled batches, uint8 on the host, float in [-1, 1] on the device."""
import functools
import os
import signal

import torch
from torch.utils.data import DataLoader, DistributedSampler, Sampler

try:  # deprecated in torchvision 0.29 (for TorchCodec); nvJPEG decoding needs it
    from torchvision.io import ImageReadMode, decode_jpeg
except ImportError:
    decode_jpeg = None

from .errors import DatasetError
from .images import bytes_tensor, decode

JPEG_MAGIC = b"\xff\xd8\xff"


def dist_rank_world():
    """(rank, world size) under torch.distributed, else (0, 1)."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return 0, 1


class InfiniteSampler(Sampler):
    """Endless indices: pass after pass of a DistributedSampler (this rank's shard, reshuffled per
    pass with ``seed + pass``), so a training loop never restarts its DataLoader iterator."""

    def __init__(self, dataset, shuffle=True, seed=0, rank=None, num_replicas=None, start_epoch=0):
        if rank is None or num_replicas is None:
            rank, num_replicas = dist_rank_world()
        if len(dataset) == 0:
            raise DatasetError("InfiniteSampler: the dataset is empty")
        self.dataset, self.shuffle, self.seed = dataset, shuffle, seed
        self.rank, self.num_replicas, self.start_epoch = rank, num_replicas, start_epoch

    def __iter__(self):
        epoch = self.start_epoch
        while True:
            sampler = DistributedSampler(self.dataset, num_replicas=self.num_replicas, rank=self.rank,
                                         shuffle=self.shuffle, seed=self.seed)
            sampler.set_epoch(epoch)
            yield from sampler
            epoch += 1


def decode_jpeg_batch(data, device="cpu"):
    """Encoded images (bytes or 1-D uint8 tensors, same size) -> uint8 [N, 3, H, W] on ``device``.
    On a GPU the JPEGs are decoded in one batched nvJPEG call (torchvision); other formats, and
    everything on the CPU, are decoded by ``images.decode``."""
    device = torch.device(device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise DatasetError(f"decoding on {device} needs a CUDA GPU; none is visible (use device='cpu')")
    if device.type != "cuda":
        return torch.stack([decode(bytes(d.numpy()) if isinstance(d, torch.Tensor) else d) for d in data])
    if decode_jpeg is None:
        raise DatasetError("GPU decoding needs torchvision.io.decode_jpeg, which this torchvision lacks")
    tensors = [d if isinstance(d, torch.Tensor) else bytes_tensor(d) for d in data]
    jpeg = [i for i, t in enumerate(tensors) if bytes(t[:3].tolist()) == JPEG_MAGIC]
    out = [None] * len(tensors)
    if jpeg:
        for i, img in zip(jpeg, decode_jpeg([tensors[i] for i in jpeg], mode=ImageReadMode.RGB, device=device)):
            out[i] = img
    for i, t in enumerate(tensors):
        if out[i] is None:
            out[i] = decode(bytes(t.numpy())).to(device)
    return torch.stack(out)


class _Encoded(torch.utils.data.Dataset):
    """The stored bytes of an LMDBImages, as uint8 tensors (for decoding on the GPU)."""

    def __init__(self, images):
        self.images = images

    def __len__(self):
        return len(self.images)

    def __getitem__(self, index):
        return bytes_tensor(self.images.encoded(index))


def _as_list(batch):
    return batch


def _init_loader_worker(parent, worker_id):
    """A DataLoader worker dies with the process that started it (by any signal; no orphans
    holding memory), and leaves SIGINT/SIGTERM to it: the run finishes its step and writes a
    checkpoint, which a worker killed by the same Ctrl-C or SLURM SIGTERM would break."""
    from stylenas.runs import die_with_parent

    die_with_parent(parent)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)


def worker_init(num_workers=1):
    """``worker_init_fn`` of every DataLoader of the package (see ``_init_loader_worker``); None
    without workers."""
    return functools.partial(_init_loader_worker, os.getpid()) if num_workers > 0 else None


class TrainingLoader:
    """Endless training batches: ``next(loader)`` is float [B, 3, H, W] in [-1, 1] on ``device``.

    Host side stays uint8 (a quarter of float's bytes through worker queues, pinned memory and
    PCIe); conversion to float and the random horizontal flip happen on ``device``. Under
    torch.distributed each rank reads its own shard (DistributedSampler). ``gpu_decode=True``
    ships the encoded JPEG bytes instead and decodes them with batched nvJPEG on the GPU.
    ``dataset`` is an LMDBImages (any dataset of uint8 [3, H, W] without ``gpu_decode``)."""

    def __init__(self, dataset, batch_size, device="cpu", num_workers=2, flip=True, seed=0,
                 gpu_decode=False, pin_memory=None, sampler=None, prefetch_factor=2):
        self.device = torch.device(device)
        if gpu_decode and self.device.type != "cuda":
            raise DatasetError(f"gpu_decode needs a CUDA device, got device={self.device}")
        if gpu_decode and not torch.cuda.is_available():
            raise DatasetError("gpu_decode needs a CUDA GPU; none is visible")
        rank, _ = dist_rank_world()
        self.flip, self.gpu_decode = flip, gpu_decode
        self.pin = self.device.type == "cuda" if pin_memory is None else pin_memory
        self.loader = DataLoader(
            _Encoded(dataset) if gpu_decode else dataset, batch_size=batch_size,
            sampler=sampler if sampler is not None else InfiniteSampler(dataset, seed=seed),
            num_workers=num_workers, pin_memory=self.pin and not gpu_decode, drop_last=True,
            collate_fn=_as_list if gpu_decode else None,
            worker_init_fn=worker_init(num_workers),
            prefetch_factor=prefetch_factor if num_workers > 0 else None)
        self.generator = torch.Generator().manual_seed(seed * 1000 + rank)  # the flips
        self._iter = None

    def __iter__(self):
        return self

    def __next__(self):
        if self._iter is None:
            self._iter = iter(self.loader)
        batch = next(self._iter)
        if self.gpu_decode:
            images = decode_jpeg_batch(batch, self.device)
        else:
            images = batch.to(self.device, non_blocking=self.pin)
        if self.flip:
            mask = (torch.rand(len(images), generator=self.generator) < 0.5).to(self.device)
            images = torch.where(mask[:, None, None, None], images.flip(3), images)
        return images.float() / 127.5 - 1
