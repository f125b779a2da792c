"""Write nvlabs_reference.npz: NVlabs stylegan2-ada-pytorch's AugmentPipe outputs for fixed inputs, one
transform (or the whole bgc / bgcfnc pipe) at a time, the oracle of tests/test_augment.py.

NVlabs' ``debug_percentile`` replaces every random draw by a value of the percentile ``q`` (and sets
the post-rotation to 0); the parameters it implies are computed here from the formulas of its
``augment.py`` and stored beside the outputs, so the test feeds the same parameters to our pipe.

Rerun (needs a checkout; its dnnlib imports `requests`, stubbed here when missing):
    python tests/data/augment/make_nvlabs_reference.py --nvlabs /path/to/stylegan2-ada-pytorch
"""
import math
import sys
import types
from pathlib import Path

import click
import numpy as np
import torch

HERE = Path(__file__).resolve().parent
SIZE = 22  # imgfilter's 43-tap bank needs more than 21 px of reflect padding
CASES = {  # name: (pipe multipliers, percentile q)
    "xflip": (dict(xflip=1), 0.8), "rotate90_1": (dict(rotate90=1), 0.3), "rotate90_3": (dict(rotate90=1), 0.8),
    "xint": (dict(xint=1), 0.9), "scale": (dict(scale=1), 0.8), "rotate": (dict(rotate=1), 0.7),
    "aniso": (dict(aniso=1), 0.2), "xfrac": (dict(xfrac=1), 0.7), "brightness": (dict(brightness=1), 0.8),
    "contrast": (dict(contrast=1), 0.3), "lumaflip": (dict(lumaflip=1), 0.8), "hue": (dict(hue=1), 0.65),
    "saturation": (dict(saturation=1), 0.8), "imgfilter": (dict(imgfilter=1), 0.9),
    "cutout": (dict(cutout=1), 0.3),
    "bgc_a": ("bgc", 0.8), "bgc_b": ("bgc", 0.35), "bgcfc": ("bgcfc", 0.9),
}
BGC = dict(xflip=1, rotate90=1, xint=1, scale=1, rotate=1, aniso=1, xfrac=1, brightness=1, contrast=1, lumaflip=1,
           hue=1, saturation=1)


def implied_parameters(multipliers, q, size=SIZE):
    """Our AugmentPipe's parameter dict for NVlabs' debug_percentile q (NVlabs' default ranges) on
    square images of ``size`` px."""
    normal = float(torch.erfinv(torch.tensor(q * 2 - 1, dtype=torch.float64)))
    on = {k for k, v in multipliers.items() if v > 0}
    p = {}
    if "xflip" in on:
        p["xflip"] = [math.floor(q * 2)]
    if "rotate90" in on:
        p["rotate90"] = [math.floor(q * 4)]
    if "xint" in on:
        t = (q * 2 - 1) * 0.125
        p["xint"] = [[round(t * size), round(t * size)]]
    if "scale" in on:
        p["scale"] = [2 ** (normal * 0.2)]
    if "rotate" in on:
        p["rotate_pre"], p["rotate_post"] = [(q * 2 - 1) * math.pi], [0.0]
    if "aniso" in on:
        p["aniso"] = [2 ** (normal * 0.2)]
    if "xfrac" in on:
        p["xfrac"] = [[normal * 0.125 * size] * 2]
    if "brightness" in on:
        p["brightness"] = [normal * 0.2]
    if "contrast" in on:
        p["contrast"] = [2 ** (normal * 0.5)]
    if "lumaflip" in on:
        p["lumaflip"] = [math.floor(q * 2)]
    if "hue" in on:
        p["hue"] = [(q * 2 - 1) * math.pi]
    if "saturation" in on:
        p["saturation"] = [2 ** (normal * 1.0)]
    if "imgfilter" in on:
        p["imgfilter"] = [[2 ** (normal * 1.0)] * 4]
    if "cutout" in on:
        p["cutout_size"], p["cutout_centre"] = [0.5], [[q, q]]
    return {k: np.asarray(v, dtype=np.float64) for k, v in p.items()}


def nvlabs_augment_pipe(nvlabs):
    """NVlabs' AugmentPipe class from a checkout (its dnnlib imports `requests`: stubbed if missing)."""
    if "requests" not in sys.modules:
        try:
            import requests  # noqa: F401
        except ImportError:
            sys.modules["requests"] = types.ModuleType("requests")
    if nvlabs not in sys.path:
        sys.path.insert(0, nvlabs)
    from training.augment import AugmentPipe

    return AugmentPipe


@click.command()
@click.option("--nvlabs", required=True, type=click.Path(exists=True, file_okay=False))
@click.option("--out", default=str(HERE / "nvlabs_reference.npz"), show_default=True)
def main(nvlabs, out):
    AugmentPipe = nvlabs_augment_pipe(nvlabs)

    gen = torch.Generator().manual_seed(2026)
    # a smooth pattern plus noise: both low and high frequencies matter to the resampling
    yy, xx = torch.meshgrid(torch.arange(SIZE, dtype=torch.float64), torch.arange(SIZE, dtype=torch.float64),
                            indexing="ij")
    smooth = torch.stack([torch.cos(2 * math.pi * (xx * 1.3 + yy * 0.4) / SIZE),
                          torch.sin(2 * math.pi * (xx * 0.2 - yy * 1.1) / SIZE), (xx - yy) / SIZE])
    image = (0.6 * smooth + 0.3 * torch.rand([3, SIZE, SIZE], generator=gen, dtype=torch.float64))[None].float()
    data = {"input": image.numpy()}
    for name, (spec, q) in CASES.items():
        multipliers = BGC if spec == "bgc" else dict(BGC, imgfilter=1, cutout=1) if spec == "bgcfc" else spec
        pipe = AugmentPipe(**multipliers)  # p = 1
        with torch.no_grad():
            data[f"{name}/output"] = pipe(image.clone(), debug_percentile=q).numpy()
        for key, value in implied_parameters(multipliers, q).items():
            data[f"{name}/param/{key}"] = value
    np.savez_compressed(out, **data)
    click.echo(f"{len(CASES)} cases -> {out}")


if __name__ == "__main__":
    main()
