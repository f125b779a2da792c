"""Reading a stylegan2-ada-pytorch network pickle without running any code from it.

NVlabs pickles whole modules: each network class is a ``torch_utils.persistence`` persistent
class whose pickled form is a call ``_reconstruct_persistent_obj(meta)``, where ``meta`` holds the
source of the module that defined the class, the class name and the instance ``__dict__``
(``_parameters``, ``_buffers``, ``_modules``, ``_init_kwargs`` and plain attributes). Loading it
with ``pickle`` executes that embedded source (and whatever else the file asks for).

``load_nvlabs_pickle(path)`` replaces every global the file names by a harmless stand-in, from a
fixed table; any other global (``os.system``, ``builtins.eval``, a TensorFlow network class...) is
refused before anything is called, with a ``RefusedGlobal`` that names it:
  - ``torch_utils.persistence._reconstruct_persistent_obj`` -> a ``PersistentRecord`` (class name,
    instance state, a hash of the embedded source, which is never executed);
  - tensors and parameters -> plain tensors (``torch._utils`` rebuild functions), their storages
    read by ``torch.load(weights_only=True)`` (the form ``pickle.dump`` gives a storage);
  - ``collections.OrderedDict``, ``dnnlib.util.EasyDict`` -> dicts; ``torch.Size`` -> tuple;
    numpy scalars of numeric dtypes (some attributes, such as ``act_gain``, are numpy floats).
"""

from __future__ import annotations

import collections
import hashlib
import io
import pickle
from dataclasses import dataclass

import numpy as np
import torch


class RefusedGlobal(pickle.UnpicklingError):
    """The pickle names a global outside the table of stand-ins; nothing of it was run."""


@dataclass
class PersistentRecord:
    """One pickled instance of an NVlabs persistent class, as data."""
    class_name: str
    state: dict
    source_sha256: str

    def children(self):
        return dict(self.state.get("_modules") or {})

    def tensors(self, prefix=""):
        """Parameters and persistent buffers of this module and its children, keyed as
        ``Module.state_dict()`` keys them."""
        out = {}
        for name, value in (self.state.get("_parameters") or {}).items():
            if value is not None:
                out[prefix + name] = value
        skip = set(self.state.get("_non_persistent_buffers_set") or ())
        for name, value in (self.state.get("_buffers") or {}).items():
            if value is not None and name not in skip:
                out[prefix + name] = value
        for name, child in self.children().items():
            if isinstance(child, PersistentRecord):
                out.update(child.tensors(f"{prefix}{name}."))
            elif child is not None:
                raise pickle.UnpicklingError(f"module {prefix}{name} is not a stylegan2-ada-pytorch network record")
        return out

    def records(self, prefix=""):
        """(name, record) of this module and every descendant, depth first."""
        yield prefix.rstrip("."), self
        for name, child in self.children().items():
            if isinstance(child, PersistentRecord):
                yield from child.records(f"{prefix}{name}.")

    def init_kwargs(self):
        return dict(self.state.get("_init_kwargs") or {})


class _AttrDict(dict):
    """Stand-in for dnnlib.util.EasyDict (a dict; unpickling may set attributes on it)."""


def _persistent_record(meta):
    if not isinstance(meta, dict) or meta.get("type") != "class" or not isinstance(meta.get("class_name"), str):
        raise pickle.UnpicklingError("a persistent-object record without a class name")
    state = meta.get("state")
    if not isinstance(state, dict):
        raise pickle.UnpicklingError(f"persistent {meta['class_name']} record without an instance state")
    source = meta.get("module_src") or ""
    return PersistentRecord(meta["class_name"], dict(state),
                            hashlib.sha256(str(source).encode("utf-8", "replace")).hexdigest())


def _storage_from_bytes(data):
    # pickle.dump(storage) stores torch.save(storage) bytes; read them back without code
    if not isinstance(data, (bytes, bytearray)):
        raise pickle.UnpicklingError("a tensor storage that is not bytes")
    return torch.load(io.BytesIO(data), weights_only=True)


def _check_storage(storage):
    if not isinstance(storage, (torch.UntypedStorage, torch.TypedStorage)):
        raise pickle.UnpicklingError(f"a tensor whose storage is a {type(storage).__name__}")


def _rebuild_tensor_v2(storage, storage_offset, size, stride, requires_grad=False, backward_hooks=None,
                       metadata=None):
    _check_storage(storage)
    return torch._utils._rebuild_tensor_v2(storage, storage_offset, tuple(size), tuple(stride), False,
                                           collections.OrderedDict())


def _rebuild_parameter(data, requires_grad=False, backward_hooks=None, state=None):
    if not torch.is_tensor(data):
        raise pickle.UnpicklingError("a parameter without tensor data")
    return data


def _numpy_scalar(dtype, data=None):
    if not isinstance(dtype, np.dtype) or dtype.hasobject or dtype.kind not in "biufc" or \
            not isinstance(data, (bytes, bytearray)):
        raise pickle.UnpicklingError(f"a numpy scalar of dtype {dtype!r}")
    return np.frombuffer(data, dtype=dtype, count=1)[0]


def _numpy_dtype(name, align=False, copy=False):
    if not isinstance(name, str):
        raise pickle.UnpicklingError(f"a numpy dtype given as {type(name).__name__}")
    dtype = np.dtype(name)
    if dtype.hasobject:
        raise pickle.UnpicklingError(f"numpy dtype {name!r} holds Python objects")
    return dtype


def _torch_size(values=()):
    return tuple(int(v) for v in values)


STAND_INS = {
    ("torch_utils.persistence", "_reconstruct_persistent_obj"): _persistent_record,
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor_v2,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    ("torch._utils", "_rebuild_parameter_with_state"): _rebuild_parameter,
    ("torch.storage", "_load_from_bytes"): _storage_from_bytes,
    ("torch", "Size"): _torch_size,
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("dnnlib.util", "EasyDict"): _AttrDict,
    ("dnnlib", "EasyDict"): _AttrDict,
    ("numpy", "dtype"): _numpy_dtype,
    ("numpy.core.multiarray", "scalar"): _numpy_scalar,
    ("numpy._core.multiarray", "scalar"): _numpy_scalar,
}


class _RestrictedUnpickler(pickle.Unpickler):
    def find_class(self, module, name):
        try:
            return STAND_INS[(module, name)]
        except KeyError:
            raise RefusedGlobal(f"{module}.{name}") from None

    def persistent_load(self, pid):
        raise pickle.UnpicklingError("a persistent id (not a plain pickle of a stylegan2-ada-pytorch network)")


def load_nvlabs_pickle(path):
    """The unpickled object of ``path`` with persistent modules as ``PersistentRecord``s. Raises
    ``RefusedGlobal`` (its message: "module.name") for any global outside ``STAND_INS`` and
    ``pickle.UnpicklingError`` / ``EOFError`` / ``OSError`` for a file that is not such a pickle."""
    with open(path, "rb") as f:
        return _RestrictedUnpickler(f).load()
