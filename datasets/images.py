"""Image sources (folder or .zip), PIL-mode conversion, resize + centre crop, encode and decode."""
import io
import os
import re
import zipfile
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps

from .errors import DatasetError

IMAGE_EXTENSIONS = {".png", ".jpg", ".jpeg", ".jpe", ".jfif", ".webp", ".bmp", ".dib", ".tif", ".tiff",
                    ".gif", ".ppm", ".pgm", ".pbm", ".pnm", ".tga"}

FILTERS = {"lanczos": Image.Resampling.LANCZOS, "box": Image.Resampling.BOX,
           "bicubic": Image.Resampling.BICUBIC}

FORMATS = ("jpeg", "png")

try:  # torchvision 0.29 deprecates its decoders (for TorchCodec); without them PIL decodes
    from torchvision.io import ImageReadMode, decode_image
except ImportError:
    decode_image = None


def is_image_name(name):
    """True for a file name with an image extension that is not hidden (``.x``, macOS ``__MACOSX/``)."""
    parts = name.replace("\\", "/").split("/")
    if any(part.startswith(".") or part == "__MACOSX" for part in parts):
        return False
    return os.path.splitext(parts[-1])[1].lower() in IMAGE_EXTENSIONS


class ImageSource:
    """The image files of a folder (searched recursively) or of a ``.zip``, in sorted order.

    ``names`` are posix paths relative to the folder / inside the zip; ``read(name)`` returns the
    file's bytes. The object pickles (a zip handle is opened lazily in each process)."""

    def __init__(self, path):
        self.path = str(path)
        p = Path(path)
        if not p.exists():
            raise DatasetError(f"{path}: no such file or directory (expected a folder or a .zip of images)")
        if p.is_dir():
            self.kind = "folder"
            names = [f.relative_to(p).as_posix() for f in p.rglob("*") if f.is_file()]
        elif zipfile.is_zipfile(p):
            self.kind = "zip"
            with zipfile.ZipFile(p) as z:
                names = [i.filename for i in z.infolist() if not i.is_dir()]
        else:
            raise DatasetError(f"{path}: not a folder or a .zip archive (expected a folder or a .zip of images)")
        self.names = sorted(n for n in names if is_image_name(n))
        self.ignored = len(names) - len(self.names)
        self._zip = None

    def __len__(self):
        return len(self.names)

    def read(self, name):
        if self.kind == "folder":
            return (Path(self.path) / name).read_bytes()
        if self._zip is None or self._zip[0] != os.getpid():  # one handle per process
            self._zip = (os.getpid(), zipfile.ZipFile(self.path))
        return self._zip[1].read(name)

    def __getstate__(self):
        return {**self.__dict__, "_zip": None}


def to_rgb(img):
    """Any PIL mode -> 8-bit RGB: alpha (RGBA, LA, PA, P with transparency) composited on white,
    16/32-bit and float greyscale rescaled to 8 bits, CMYK/YCbCr/1/L/P converted by PIL."""
    if img.mode == "RGB":
        return img
    if img.mode == "P":
        img = img.convert("RGBA" if "transparency" in img.info else "RGB")
    if img.mode.startswith("I") or img.mode == "F":
        # PIL's own convert("L") clips these at 255 instead of rescaling their range
        a = np.asarray(img).astype(np.float64)
        if img.mode.startswith("I;16") or (img.mode == "I" and a.max(initial=0) > 255):
            a = a / 257.0
        elif img.mode == "F" and a.max(initial=0) <= 1.0:
            a = a * 255.0
        img = Image.fromarray(np.rint(a).clip(0, 255).astype(np.uint8), "L")
    if img.mode == "La":  # premultiplied; PIL converts it to LA only
        img = img.convert("LA")
    if img.mode in ("RGBA", "LA", "RGBa", "PA"):
        white = Image.new("RGBA", img.size, (255, 255, 255, 255))
        img = Image.alpha_composite(white, img.convert("RGBA"))
    return img.convert("RGB")


def load_image(data):
    """Encoded bytes -> RGB PIL image, fully decoded (so a truncated file fails here), EXIF-rotated,
    converted by ``to_rgb``. prepare_data and the FID of an image folder both decode with it, so a
    folder gives the same pixels to both commands."""
    with Image.open(io.BytesIO(data)) as img:
        img.load()
        img = ImageOps.exif_transpose(img)
        return to_rgb(img)


def resize_center_crop(img, size, resample=Image.Resampling.LANCZOS):
    """Resize the short side to ``size`` and crop the centre square, in one resampling pass
    (resampling the centre-square box directly keeps the crop exact and costs one resize)."""
    w, h = img.size
    short = min(w, h)
    left, top = (w - short) / 2, (h - short) / 2
    if short == size and left == int(left) and top == int(top):
        return img.crop((int(left), int(top), int(left) + size, int(top) + size))  # no resampling: exact
    return img.resize((size, size), resample, box=(left, top, left + short, top + short))


def encode_image(img, image_format="jpeg", quality=95):
    """PIL RGB image -> JPEG (4:4:4 chroma: subsampling would blur colour edges the GAN learns) or PNG bytes."""
    buf = io.BytesIO()
    if image_format == "jpeg":
        img.save(buf, "JPEG", quality=quality, subsampling=0)
    elif image_format == "png":
        img.save(buf, "PNG", compress_level=4)
    else:
        raise DatasetError(f"image format must be one of {', '.join(FORMATS)}, got {image_format!r}")
    return buf.getvalue()


def _clean(error):
    # torchvision prefixes messages with its C++ source location; keep the reason only
    return re.split(r"\.cpp:\d+, ", str(error))[-1].strip()


def bytes_tensor(data):
    """Encoded bytes -> 1-D uint8 tensor (a copy: LMDB buffers are read-only)."""
    return torch.frombuffer(bytearray(data), dtype=torch.uint8)


def decode(data):
    """Encoded image bytes -> uint8 tensor [3, H, W], decoded by torchvision (libjpeg-turbo / libpng,
    straight to uint8); formats torchvision cannot read fall back to PIL. Raises ValueError if corrupt."""
    if not data:
        raise ValueError("empty record")
    if decode_image is None:
        return _decode_pil(data)
    try:
        # torchvision returns a [3, H, W] view of an [H, W, 3] buffer; copying it to planar here (in the
        # worker) is cheap, whereas batching such views later is slow (torch.stack on strided input)
        return decode_image(bytes_tensor(data), mode=ImageReadMode.RGB).contiguous()
    except RuntimeError as tv_error:
        try:
            return _decode_pil(data)
        except ValueError:
            raise ValueError(_clean(tv_error)) from None


def _decode_pil(data):
    try:
        img = load_image(data)
    except Exception as error:
        raise ValueError(str(error)) from None
    return torch.from_numpy(np.array(img)).permute(2, 0, 1).contiguous()
