"""NVlabs stylegan2-ada-pytorch networks -> StyleNAS ``stylegan2`` genotype networks.

Our layer names follow NVlabs' where they can (``b{res}.conv0``, ``conv1``, ``torgb``, ``affine``,
``noise_strength``...); ``nvlabs_key_to_ours`` is the whole difference. What the pickle holds is
checked against what our networks compute, from the pickled layer attributes (not the embedded
source, which is never run): a construct we cannot represent is refused, never approximated.

Representable: unconditional (c_dim 0), 3 channels, any number of mapping layers (8 for
``--cfg stylegan2``/``paper*``, 2 for ``auto``/``cifar``) of w_dim features with lrelu,
the "skip" generator with 3x3 modulated convs, lrelu, the [1, 3, 3, 1] filter (with or without
noise inputs), the "resnet" discriminator with one minibatch-stddev channel; any resolution,
channel_base/channel_max, conv_clamp, fp16 setting (we compute in float32), mapping lr multiplier
(the stored weights are rescaled to ours, 0.01).
"""

from __future__ import annotations

import math
import re
from pathlib import Path

import torch

from ...ops import setup_filter
from .safe_pickle import PersistentRecord
from .common import Converted, ImportNetworkError

FIR = setup_filter([1, 3, 3, 1])
KNOWN_CLASSES = {"Generator", "MappingNetwork", "FullyConnectedLayer", "SynthesisNetwork", "SynthesisBlock",
                 "SynthesisLayer", "ToRGBLayer", "Conv2dLayer", "Discriminator", "DiscriminatorBlock",
                 "DiscriminatorEpilogue", "MinibatchStdLayer"}
OUR_MAPPING_LR_MUL = 0.01


def nvlabs_key_to_ours(key):
    """One NVlabs parameter/buffer name -> ours; None for NVlabs' resample filters (ours are
    non-persistent buffers, checked separately)."""
    if key.endswith("resample_filter"):
        return None
    key = key.replace("mapping.fc", "mapping.fcs.").replace("synthesis.b4.const", "synthesis.const")
    if key.startswith("synthesis.b"):
        return "synthesis.blocks." + key[len("synthesis."):]
    if key.startswith("b4."):
        return key[len("b4."):]
    if key.startswith("b"):
        return "blocks." + key
    return key


def nvlabs_to_ours(state):
    """An NVlabs Generator/Discriminator state dict with our names (resample filters dropped)."""
    return {ours: value for key, value in state.items() if (ours := nvlabs_key_to_ours(key)) is not None}


def _fail(source, message):
    raise ImportNetworkError(f"{source}: {message}")


def _check_records(source, root, what):
    for name, record in root.records():
        if record.class_name not in KNOWN_CLASSES:
            _fail(source, f"{what}{'.' + name if name else ''} is a {record.class_name}, not a stylegan2-ada-pytorch "
                          f"StyleGAN2 layer (StyleGAN3 and other networks are not supported)")
    for key, value in root.tensors().items():
        if key.endswith("resample_filter") and not (value.shape == FIR.shape and torch.allclose(value, FIR)):
            _fail(source, f"{what}.{key} is not the [1, 3, 3, 1] filter StyleNAS uses")


def _attr(record, name, default=None):
    return record.state.get(name, default)


def _layer_attributes(source, root, what):
    """Checks the attributes of every layer that change what it computes; returns
    (conv_clamp, mapping lr multiplier or None, minibatch-stddev group or None)."""
    clamps, lr_mul, mbstd = set(), None, None
    for name, record in root.records():
        where = f"{what}.{name}" if name else what
        kind = record.class_name
        if kind in ("SynthesisBlock", "DiscriminatorBlock", "DiscriminatorEpilogue"):
            expected = "skip" if kind == "SynthesisBlock" else "resnet"
            if _attr(record, "architecture") != expected:
                _fail(source, f"{where} has architecture {_attr(record, 'architecture')!r}; StyleNAS's "
                              f"{'generator' if expected == 'skip' else 'discriminator'} is {expected!r}")
        if kind == "SynthesisLayer":
            if _attr(record, "activation") != "lrelu":
                _fail(source, f"{where} uses activation {_attr(record, 'activation')!r}, StyleNAS lrelu")
            clamps.add(_attr(record, "conv_clamp"))
        if kind == "ToRGBLayer" or (kind == "Conv2dLayer" and not name.endswith("skip")):
            clamps.add(_attr(record, "conv_clamp"))  # NVlabs' skip convs have none, as ours
        if kind == "Conv2dLayer":
            expected = "linear" if name.endswith("skip") else "lrelu"
            if _attr(record, "activation") != expected:
                _fail(source, f"{where} uses activation {_attr(record, 'activation')!r}, StyleNAS {expected}")
        if kind == "FullyConnectedLayer":
            expected = "lrelu" if name.startswith("mapping.") or name.endswith(".fc") else "linear"
            if _attr(record, "activation") != expected:
                _fail(source, f"{where} uses activation {_attr(record, 'activation')!r}, StyleNAS {expected}")
            if name.startswith("mapping."):
                lr_mul = float(_attr(record, "bias_gain", 1.0))
        if kind == "MinibatchStdLayer":
            if _attr(record, "num_channels", 1) != 1:
                _fail(source, f"{where} has {_attr(record, 'num_channels')} minibatch-stddev channels; StyleNAS 1")
            mbstd = int(_attr(record, "group_size"))
    return clamps, lr_mul, mbstd


def _generator(source, record, what):
    """(our state dict, NVlabs' w_avg or None, the configuration) of an NVlabs Generator record."""
    if not isinstance(record, PersistentRecord) or record.class_name != "Generator":
        _fail(source, f"{what} is not a stylegan2-ada-pytorch Generator")
    _check_records(source, record, what)
    kwargs = record.init_kwargs()
    c_dim, img_channels = int(_attr(record, "c_dim", 0) or 0), int(_attr(record, "img_channels", 3))
    if c_dim != 0:
        _fail(source, f"{what} is a conditional network (c_dim={c_dim}); StyleNAS generators are unconditional")
    if img_channels != 3:
        _fail(source, f"{what} makes {img_channels}-channel images; StyleNAS networks make RGB (3)")
    mapping = record.children().get("mapping")
    num_layers = int(_attr(mapping, "num_layers", -1)) if mapping is not None else -1
    if num_layers < 1:
        _fail(source, f"{what} has no mapping network layers (num_layers {num_layers}); expected 1 or more")
    clamps, lr_mul, _ = _layer_attributes(source, record, what)
    if len(clamps) > 1:
        _fail(source, f"{what} mixes conv_clamp values {sorted(map(str, clamps))}; StyleNAS uses one")
    synthesis_kwargs = dict(kwargs.get("synthesis_kwargs") or {})
    state = nvlabs_to_ours(record.tensors())
    if lr_mul is not None and not math.isclose(lr_mul, OUR_MAPPING_LR_MUL):
        scale = lr_mul / OUR_MAPPING_LR_MUL  # same function with our parametrisation
        for key in [k for k in state if k.startswith("mapping.fcs.")]:
            state[key] = state[key] * scale
    for name, layer in record.records():  # use_noise=False: no noise input is a zero noise strength
        key = nvlabs_key_to_ours(name)
        if layer.class_name == "SynthesisLayer" and key + ".noise_strength" not in state:
            res = int(_attr(layer, "resolution"))
            state[key + ".noise_strength"] = torch.zeros([])
            state[key + ".noise_const"] = torch.zeros([res, res])
    w_avg = state.pop("mapping.w_avg", None)
    return state, w_avg, {
        "resolution": int(_attr(record, "img_resolution")), "z_dim": int(_attr(record, "z_dim")),
        "w_dim": int(_attr(record, "w_dim")),
        "channel_base": int(synthesis_kwargs.get("channel_base", 32768)),
        "channel_max": int(synthesis_kwargs.get("channel_max", 512)),
        "conv_clamp": next(iter(clamps)) if clamps else None, "mapping_layers": num_layers,
    }


def _discriminator(source, record):
    if not isinstance(record, PersistentRecord) or record.class_name != "Discriminator":
        _fail(source, "D is not a stylegan2-ada-pytorch Discriminator")
    _check_records(source, record, "D")
    kwargs = record.init_kwargs()
    c_dim = int(_attr(record, "c_dim", 0) or 0)
    if c_dim != 0:
        _fail(source, f"D is a conditional network (c_dim={c_dim}); StyleNAS networks are unconditional")
    clamps, _, mbstd = _layer_attributes(source, record, "D")
    return nvlabs_to_ours(record.tensors()), {
        "channel_base": int(kwargs.get("channel_base", 32768)), "channel_max": int(kwargs.get("channel_max", 512)),
        "mbstd_group": mbstd if mbstd is not None else 4, "conv_clamps": clamps}


def convert(source, data):
    """A ``Converted`` of the unpickled NVlabs snapshot dict ``data`` (``safe_pickle``)."""
    if not isinstance(data, dict) or not isinstance(data.get("G_ema"), PersistentRecord):
        _fail(source, "not a stylegan2-ada-pytorch network pickle (expected a dict with G_ema, G and D networks)")
    G_ema, w_avg_ema, spec = _generator(source, data["G_ema"], "G_ema")
    G, w_avg = None, None
    if data.get("G") is not None:
        G, w_avg, g_spec = _generator(source, data["G"], "G")
        if g_spec != spec:
            _fail(source, f"G and G_ema differ in configuration ({g_spec} vs {spec})")
    D, mbstd = None, 4
    if data.get("D") is not None:
        D, d_spec = _discriminator(source, data["D"])
        for name in ("channel_base", "channel_max"):
            if d_spec[name] != spec[name]:
                _fail(source, f"D has {name} {d_spec[name]}, G {spec[name]}; StyleNAS builds both from one value")
        other = d_spec["conv_clamps"] - {spec["conv_clamp"]}
        if other:
            _fail(source, f"D uses conv_clamp {sorted(map(str, other))}, G {spec['conv_clamp']}; StyleNAS uses one")
        mbstd = d_spec["mbstd_group"]
    G_kwargs = data["G_ema"].init_kwargs()
    snapshot = re.fullmatch(r"network-snapshot-(\d+)\.pkl", Path(source).name)  # training_loop.py's name: kimg
    counters = {"kimg": float(snapshot.group(1)), "nimg": int(snapshot.group(1)) * 1000} if snapshot else {}
    fp16_res = int((G_kwargs.get("synthesis_kwargs") or {}).get("num_fp16_res", 0) or 0)
    return Converted(format="nvlabs", G_ema=G_ema, G=G, D=D, w_avg_ema=w_avg_ema, w_avg=w_avg, mbstd_group=mbstd,
                     fp16_res=fp16_res, counters=counters, **spec)
