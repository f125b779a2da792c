"""LMDB image data for StyleNAS (installed as ``stylenas.datasets``).

Files use the layout of rosinality's stylegan2-pytorch (``length`` plus images under
``f"{size}-{index:05d}"``) and a ``stylenas-meta`` JSON key of our own; files made by
rosinality's ``prepare_data.py`` read unchanged.
"""
from .errors import DatasetError
from .images import ImageSource, decode, resize_center_crop, to_rgb
from .loader import InfiniteSampler, TrainingLoader, decode_jpeg_batch
from .reader import LMDBImages
from .prepare import prepare_data
from .demo import make_demo_data
from .store import LENGTH_KEY, META_KEY, LMDBWriter, describe, record_key

__all__ = ["DatasetError", "ImageSource", "InfiniteSampler", "LENGTH_KEY", "LMDBImages", "LMDBWriter",
           "META_KEY", "TrainingLoader", "decode", "decode_jpeg_batch", "describe", "make_demo_data",
           "prepare_data", "record_key", "resize_center_crop", "to_rgb"]
