"""GAN metrics: FID Inception network, statistics, Frechet distance, Inception Score, KID.

Protocol (pytorch-fid's, so numbers compare with published ones): uint8 RGB images ->
bilinear resize to 299 (align_corners=False, no antialias) -> the TF 2015-12-05 Inception
v3 port (`InceptionV3FID`) -> 2048-d pool features -> float64 mean and unbiased covariance
(`FeatureStats`, `.npz` files with `mu` and `sigma`) -> `frechet_distance`.
"""
from .data import IMAGE_EXTENSIONS, ImageFolder, ImageReadError, extract_features, list_images
from .frechet import batched_eigvalsh, frechet_distance, frechet_distance_batched, trace_sqrt_product
from .inception import (WEIGHTS_FILE, WEIGHTS_URL, InceptionOutput, InceptionV3FID, InceptionWeightsError,
                        find_weights, no_tf32, to_uint8)
from .scores import inception_score, kernel_inception_distance
from .stats import FeatureStats, StatsFileError, check_stats_path, load_stats, save_stats, stats_count

__all__ = [
    "InceptionV3FID", "InceptionOutput", "InceptionWeightsError", "WEIGHTS_FILE", "WEIGHTS_URL", "find_weights",
    "no_tf32", "to_uint8",
    "FeatureStats", "StatsFileError", "check_stats_path", "load_stats", "save_stats", "stats_count",
    "frechet_distance", "frechet_distance_batched", "batched_eigvalsh", "trace_sqrt_product",
    "inception_score", "kernel_inception_distance",
    "IMAGE_EXTENSIONS", "ImageFolder", "ImageReadError", "extract_features", "list_images",
]
