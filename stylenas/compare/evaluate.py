"""The shared evaluation of ``stylenas compare``: every row's retrained G_ema scored against the same
reference features with the same sample counts, by the functions ``stylenas fid`` uses.

The reference (the first ``num_ref`` images of the data, all by default) goes through the FID
Inception once per compare folder and is kept in ``DIR/reference-features.pt`` (written atomically,
recognised by its data path, resolution, count and weights file), so a job reads it instead of
extracting it again. Generated images: seeds 0..num-1 of the checkpoint's G_ema, quantised as saved
PNGs would be (``stylenas.train.generate.checkpoint_images``, what ``stylenas fid CKPT`` reads).
"""
from pathlib import Path

import torch

from ..io import save_torch
from ..metrics import FeatureStats, InceptionV3FID, extract_features, frechet_distance, inception_score
from ..metrics import kernel_inception_distance
from ..metrics.prdc import prdc

REFERENCE_FILE = "reference-features.pt"
IS_SPLITS = 10


# What scores the rows (``--proxy`` picks the second): the name recorded in compare.json and in every
# row's ``features``, and the words the leaderboard's protocol uses for it.
FEATURES = {
    "inception": "pytorch-fid's FID Inception (TF Inception v3 of 2015-12-05)",
    "proxy": "a seeded random-weight FID Inception, a PROXY (seed 0, 75 px input: "
             "stylenas.conventional.rewards.ProxyInception, the searchers' --proxy network); "
             "its numbers are not comparable to published FID, IS or KID",
}


def inception_network(weights, device):
    return InceptionV3FID(weights=weights).to(device)


def proxy_network(device):
    """The labelled stand-in for machines without pytorch-fid's weights file: the FID Inception with
    weights drawn from seed 0 (bit-identical in every process) and 75 px inputs, the network the
    conventional searchers' ``--proxy`` scores with. Its numbers rank the rows of one leaderboard by a
    fixed random feature map; they are no FID."""
    from ..conventional.rewards import ProxyInception

    return ProxyInception(seed=0).to(device)


def reference_features(outdir, dataset, data_key, num_ref, net, log):
    """[N, 2048] float32 pool features of the reference images, computed once per folder."""
    path = Path(outdir) / REFERENCE_FILE
    count = len(dataset) if num_ref is None else min(num_ref, len(dataset))
    key = {**data_key, "images": count}
    if path.is_file():
        saved = torch.load(path, map_location="cpu", weights_only=True)
        if saved.get("key") == key:
            return saved["features"]
    log(f"reference: Inception features of {count} images of {data_key['data']}")
    subset = torch.utils.data.Subset(dataset, range(count))
    _, features, _ = extract_features(net, subset, keep_features=True)
    save_torch({"key": key, "features": features}, path)
    return features


def feature_stats(features):
    stats = FeatureStats()
    stats.update(features)
    return stats.stats()


def generated_features(checkpoint, num, net):
    """(pool features, unbiased logits) of G_ema's images for seeds 0..num-1."""
    from ..train.generate import checkpoint_images

    device = next(net.parameters()).device
    images = checkpoint_images(checkpoint, num, device)
    _, features, logits = extract_features(net, images, num_workers=0, keep_features=True, keep_logits=True)
    return features, logits


def score_checkpoint(checkpoint, reference, num, net):
    """FID, IS (10 splits), KID and precision / recall / density / coverage of a checkpoint."""
    device = next(net.parameters()).device
    features, logits = generated_features(checkpoint, num, net)
    fid = frechet_distance(*feature_stats(features), *feature_stats(reference))
    is_mean, is_std = inception_score(logits, splits=min(IS_SPLITS, len(logits)))
    kid_mean, kid_std = kernel_inception_distance(features, reference, device=device)
    return {"fid": fid, "is": is_mean, "is_std": is_std, "kid": kid_mean, "kid_std": kid_std,
            **prdc(features, reference, device=device)}


def checkpoint_fid(checkpoint, reference, num, net):
    """The FID alone (the random search's score of a candidate)."""
    features, _ = generated_features(checkpoint, num, net)
    return frechet_distance(*feature_stats(features), *feature_stats(reference))


def parameter_count(checkpoint):
    """Parameters of the checkpoint's generator (G_ema)."""
    from ..train.checkpoint import load_generator

    G, _ = load_generator(checkpoint, "cpu")
    return sum(p.numel() for p in G.parameters())
