"""Importing networks of the reference StyleGAN2 code bases into StyleNAS checkpoints, running no
code from the file.

- NVlabs stylegan2-ada-pytorch network pickles (``network-snapshot-*.pkl``, ``ffhq.pkl``): read by
  ``safe_pickle`` (persistent-class records and tensors only; any other global is refused), mapped
  by ``nvlabs``.
- rosinality stylegan2-pytorch checkpoints (``550000.pt``): ``torch.load(weights_only=True)`` with
  ``argparse.Namespace`` (its ``args``) as the only extra class, mapped by ``rosinality``.

``read_network(path) -> (format, checkpoint dict)``: format is "nvlabs", "rosinality" or
"stylenas" (a file of our own, returned as loaded); ``import_network(path)`` the converted
checkpoint of a foreign file. Every failure is one ``ImportNetworkError`` (a ``CheckpointError``)
naming the file.
"""

from __future__ import annotations

import argparse
import hashlib
import pickle
import zipfile
from pathlib import Path

import torch

from .common import ImportNetworkError, build_checkpoint

__all__ = ["ImportNetworkError", "read_network", "import_network", "sniff"]

# torch.save's legacy (pre-1.6) format opens with this pickled magic number
LEGACY_TORCH_MAGIC = b"\x80\x02\x8a\x0al\xfc\x9cF\xf9 j\xa8P\x19."


def sniff(path):
    """"torch" (a torch.save file), "pickle" (a plain pickle) or None, from the first bytes."""
    with open(path, "rb") as f:
        head = f.read(len(LEGACY_TORCH_MAGIC))
    if head.startswith(b"PK\x03\x04") or head.startswith(LEGACY_TORCH_MAGIC):
        return "torch"
    if len(head) >= 2 and head[0] == 0x80 and 2 <= head[1] <= 5:
        return "pickle"
    return None


def _sha256(path):
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _first_line(error):
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def _read_nvlabs(path):
    from . import nvlabs
    from .safe_pickle import RefusedGlobal, load_nvlabs_pickle

    try:
        data = load_nvlabs_pickle(path)
    except RefusedGlobal as error:
        hint = (" (a TensorFlow StyleGAN/StyleGAN2 pickle: convert it with stylegan2-ada-pytorch's legacy.py "
                "first)") if str(error).startswith("dnnlib.tflib.") else ""
        raise ImportNetworkError(f"{path}: refused to load: the pickle calls {error}, which is not part of a "
                                 f"stylegan2-ada-pytorch network (nothing from the file was run){hint}") from None
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, IndexError,
            RuntimeError) as error:
        raise ImportNetworkError(f"{path}: not a readable stylegan2-ada-pytorch network pickle "
                                 f"({_first_line(error)})") from None
    return nvlabs.convert(path, data)


def read_network(path, map_location="cpu"):
    """(format, checkpoint dict) of a StyleNAS checkpoint, NVlabs pickle or rosinality checkpoint."""
    path = Path(path)
    try:
        return _read_network(path, map_location)
    except ImportNetworkError:
        raise
    except (KeyError, AttributeError, TypeError, IndexError, ValueError) as error:  # a layout we do not know
        raise ImportNetworkError(f"{path}: not a network of the expected layout ({type(error).__name__}: "
                                 f"{_first_line(error)})") from None


def _read_network(path, map_location):
    try:
        kind = sniff(path)
        if kind == "pickle":
            return "nvlabs", build_checkpoint(_read_nvlabs(path), path, _sha256(path))
        if kind is None:
            raise ImportNetworkError(f"{path}: not a network file (expected a StyleNAS or rosinality checkpoint "
                                     f"saved by torch.save, or a stylegan2-ada-pytorch network pickle)")
        try:
            with torch.serialization.safe_globals([argparse.Namespace]):
                data = torch.load(path, map_location=map_location, weights_only=True)
        except (RuntimeError, EOFError, pickle.UnpicklingError, zipfile.BadZipFile, ValueError) as error:
            raise ImportNetworkError(f"{path}: not a readable checkpoint (truncated or corrupt, or it holds "
                                     f"classes other than tensors and argparse.Namespace: "
                                     f"{_first_line(error)})") from None
    except OSError as error:
        raise ImportNetworkError(f"{path}: cannot read it ({error.strerror or _first_line(error)})") from None
    if isinstance(data, dict) and "kind" in data:
        return "stylenas", data
    if isinstance(data, dict) and "g_ema" in data:
        from . import rosinality

        return "rosinality", build_checkpoint(rosinality.convert(path, data), path, _sha256(path))
    raise ImportNetworkError(f"{path}: a torch.save file, but neither a StyleNAS checkpoint (a dict with 'kind') "
                             f"nor a rosinality one (a dict with 'g_ema')")


def import_network(path):
    """Our checkpoint dict of an NVlabs pickle or a rosinality checkpoint."""
    fmt, state = read_network(path)
    if fmt == "stylenas":
        raise ImportNetworkError(f"{path}: already a StyleNAS checkpoint; nothing to import")
    return state
