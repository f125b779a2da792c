"""Training checkpoints shared by the StyleGAN2 and the conventional trainers.

A checkpoint is a plain dict saved by ``torch.save`` that loads with
``torch.load(weights_only=True)`` (no code runs from a file). Contract:

    {"kind": "stylegan2" | "conventional",
     "G": state_dict, "D": state_dict, "G_ema": state_dict,
     "G_opt": optimiser state_dict, "D_opt": ...,       # trainer-specific extra entries allowed
     "counters": {"step": int, "kimg": float, ...},
     "rng": [capture_rng() of rank 0, of rank 1, ...],  # one per process
     "genotype": dict,                                  # the genotype record the networks were built from
     "config": dict}                                    # the full training configuration

API:
- ``save_checkpoint(state, path)``: atomic (temporary file + rename), so a run killed while
  writing leaves the previous file intact.
- ``load_checkpoint(path, map_location="cpu")``: the dict, or one ``CheckpointError`` naming the
  file, what is wrong, and the newest ``network-snapshot-*.pt`` beside it that can be used.
- ``capture_rng()`` / ``restore_rng(state)``: torch CPU, every CUDA device, numpy and Python
  ``random`` generators as tensors, ints and lists (weights_only-loadable).
- ``load_generator(path, device) -> (G_ema, info)``: the EMA generator of any checkpoint (also an
  NVlabs network pickle or a rosinality checkpoint, via ``load_network``), in eval mode, with
  ``G.z_dim`` set; dispatches on "kind" ("conventional" calls
  ``stylenas.conventional.generator_from_checkpoint(checkpoint, device)``, imported lazily).
  ``info`` holds kind, resolution, z_dim, kimg/step, genotype and config.
- ``load_network(path)``: our checkpoint dict of a StyleNAS, NVlabs or rosinality file.
- ``copy_matching(module, state, where)``: load a state dict after naming the first layer that differs.
- ``snapshot_files(folder)``: the ``network-snapshot-*.pt`` files of a run, oldest first.
"""

from __future__ import annotations

import pickle
import random
import re
import zipfile
from pathlib import Path

import numpy as np
import torch

from ..io import save_torch

KINDS = ("stylegan2", "conventional")
SNAPSHOT_PATTERN = re.compile(r"network-snapshot-(\d+(?:\.\d+)?)\.pt$")


class CheckpointError(ValueError):
    """A checkpoint that is missing, unreadable or of the wrong kind; the message names the file."""


def save_checkpoint(state, path):
    """Write ``state`` (a dict with "kind") to ``path`` atomically."""
    if not isinstance(state, dict) or state.get("kind") not in KINDS:
        raise CheckpointError(f"{path}: a checkpoint must be a dict whose 'kind' is one of {', '.join(KINDS)}")
    save_torch(state, path, suffix=".pt.tmp")


def snapshot_files(folder):
    """``network-snapshot-<kimg>.pt`` files in ``folder``, ordered by kimg."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    found = [(float(m.group(1)), p) for p in folder.iterdir() if (m := SNAPSHOT_PATTERN.match(p.name))]
    return [p for _, p in sorted(found)]


def _fallback_hint(path):
    candidates = [p for p in snapshot_files(Path(path).parent) if p.resolve() != Path(path).resolve()]
    if not candidates:
        return ""
    return (f"; the previous snapshot {candidates[-1]} can be used instead (copy it to "
            f"{Path(path).parent / 'checkpoint.pt'} to resume from it)")


def load_checkpoint(path, map_location="cpu", kind=None):
    """Load a checkpoint dict with ``weights_only=True``; ``kind`` (optional) is the one expected."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint not found{_fallback_hint(path)}")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except (RuntimeError, EOFError, pickle.UnpicklingError, zipfile.BadZipFile, OSError, ValueError) as error:
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise CheckpointError(f"{path}: not a readable checkpoint (truncated or corrupt: {reason})"
                              f"{_fallback_hint(path)}") from None
    return check_checkpoint(state, path, kind)


def check_checkpoint(state, path, kind=None):
    """``state`` if it is a checkpoint dict of ``kind`` (any when None), else one CheckpointError."""
    if not isinstance(state, dict) or state.get("kind") not in KINDS:
        raise CheckpointError(f"{path}: not a StyleNAS training checkpoint (expected a dict with 'kind' one of "
                              f"{', '.join(KINDS)})")
    if kind is not None and state["kind"] != kind:
        raise CheckpointError(f"{path}: a {state['kind']} checkpoint, expected a {kind} one")
    missing = [key for key in ("G", "G_ema", "config") if key not in state]
    if missing:
        raise CheckpointError(f"{path}: checkpoint lacks {', '.join(missing)}")
    return state


# ---------------------------------------------------------------------------------------------- RNG

def capture_rng():
    """Every generator of this process as weights_only-loadable data."""
    np_state = np.random.get_state()
    py_version, py_state, py_gauss = random.getstate()
    return {
        "torch": torch.get_rng_state(),
        "cuda": [torch.cuda.get_rng_state(i) for i in range(torch.cuda.device_count())]
        if torch.cuda.is_available() else [],
        "numpy": {"name": np_state[0], "keys": torch.from_numpy(np_state[1].astype(np.int64)),
                  "pos": int(np_state[2]), "has_gauss": int(np_state[3]), "cached_gaussian": float(np_state[4])},
        "python": {"version": py_version, "state": torch.tensor(py_state, dtype=torch.int64), "gauss": py_gauss},
    }


def restore_rng(state):
    """Inverse of ``capture_rng`` (CUDA states are restored for the devices present in both)."""
    torch.set_rng_state(state["torch"].cpu())
    if torch.cuda.is_available():
        for i, cuda_state in enumerate(state["cuda"][:torch.cuda.device_count()]):
            torch.cuda.set_rng_state(cuda_state.cpu(), i)
    n = state["numpy"]
    np.random.set_state((n["name"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"],
                         n["cached_gaussian"]))
    p = state["python"]
    random.setstate((p["version"], tuple(int(v) for v in p["state"].tolist()), p["gauss"]))


# ---------------------------------------------------------------------------------------------- use

def copy_matching(module, state, where, error=CheckpointError):
    """Load ``state`` into ``module`` after checking, layer by layer in the module's order, that every
    tensor is there with the module's shape and nothing else is; the first difference raises
    ``error`` naming ``where`` and the layer."""
    own = module.state_dict()
    for key, value in own.items():
        if key not in state:
            raise error(f"{where}: has no layer {key} (expected shape {list(value.shape)}); the network being "
                        f"built does not match it")
        if not torch.is_tensor(state[key]) or tuple(state[key].shape) != tuple(value.shape):
            got = list(state[key].shape) if torch.is_tensor(state[key]) else type(state[key]).__name__
            raise error(f"{where}: layer {key} is {got}, the network being built has {list(value.shape)}")
    extra = [key for key in state if key not in own]
    if extra:
        raise error(f"{where}: layer {extra[0]} has no counterpart in the network being built"
                    f"{f' (and {len(extra) - 1} more)' if len(extra) > 1 else ''}")
    module.load_state_dict(state)


def load_network(path, map_location="cpu"):
    """Our checkpoint dict for any file ``load_generator`` and ``train --init`` accept: a StyleNAS
    checkpoint, an NVlabs stylegan2-ada-pytorch pickle or a rosinality checkpoint (converted in
    memory by ``stylenas.train.imports``, running no code from the file)."""
    from .imports import read_network

    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint not found{_fallback_hint(path)}")
    try:
        fmt, state = read_network(path, map_location=map_location)
    except CheckpointError as error:  # e.g. a snapshot cut short: name the previous one, as load_checkpoint does
        raise type(error)(f"{error}{_fallback_hint(path)}") from None
    return check_checkpoint(state, path) if fmt == "stylenas" else state


def init_networks(path, genotype, networks):
    """``train --init``: copy G, D and G_ema (with the mapping's w_avg) of ``path`` (ours, an NVlabs
    pickle or a rosinality checkpoint) into ``networks`` {"G": ..., "D": ..., "G_ema": ...}, which
    were built from ``genotype``. Every layer must match: the first that does not (its operation,
    its shape, its presence) is named in one CheckpointError. Returns the loaded checkpoint dict."""
    where = f"--init {path}"
    state = load_network(path)
    if state["kind"] != "stylegan2":
        raise CheckpointError(f"{where}: a {state['kind']} checkpoint; --init needs a StyleGAN2 one")
    missing = [name for name in networks if name not in state]
    if missing:
        raise CheckpointError(f"{where}: has no {', '.join(missing)} network")
    depth = (state.get("config") or {}).get("mapping_layers", 8)
    generator = networks.get("G_ema", networks.get("G"))
    if generator is not None and depth != len(generator.mapping.fcs):
        raise CheckpointError(f"{where}: its mapping network has {depth} layers, the training's "
                              f"{len(generator.mapping.fcs)} (StyleNAS trains with 8: W_1..W_8)")
    saved = state.get("genotype") or {}
    if saved.get("resolution") != genotype.resolution:
        raise CheckpointError(f"{where}: a {saved.get('resolution')} px network, the training is at "
                              f"{genotype.resolution} px")
    theirs = {layer["name"]: layer for layer in saved.get("layers", [])}
    for layer in genotype.layers:
        other = theirs.get(layer["name"], {})
        if other.get("op") != layer.get("op"):
            raise CheckpointError(f"{where}: layer {layer['name']} is {other.get('op')!r} there and "
                                  f"{layer.get('op')!r} in the genotype being trained")
    for name, module in networks.items():
        copy_matching(module, state[name], f"{where} ({name})")
    return state


def load_generator(path, device="cpu"):
    """(G_ema in eval mode on ``device``, info) from any trainer's checkpoint."""
    device = torch.device(device)
    state = load_network(path, map_location="cpu")
    if state["kind"] == "stylegan2":
        from .stylegan2 import generator_from_checkpoint
    else:
        try:
            from ..conventional import generator_from_checkpoint
        except ImportError:
            raise CheckpointError(f"{path}: a conventional-GAN checkpoint, but this StyleNAS cannot build "
                                  f"conventional generators (stylenas.conventional.generator_from_checkpoint "
                                  f"is missing)") from None
    try:
        generator, info = generator_from_checkpoint(state, device)
    except (KeyError, RuntimeError, ValueError) as error:
        raise CheckpointError(f"{path}: cannot rebuild its generator ({error})") from None
    if not hasattr(generator, "z_dim"):  # every generator says its latent size, for generate and FID
        generator.z_dim = info["z_dim"]
    return generator.eval().requires_grad_(False), {"kind": state["kind"], "path": str(path), **info}
