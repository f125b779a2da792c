"""The FID Inception network: weight lookup, the pytorch-fid protocol, feature extraction.

The real weights cannot be downloaded here, so the tests write a state dict of random
weights in pytorch-fid's key layout (torchvision's Inception v3 with 1008 classes and no
aux head, the model pytorch-fid loads its file into).
"""
import urllib.error

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import torchvision
from PIL import Image

from stylenas.metrics import (WEIGHTS_FILE, WEIGHTS_URL, ImageFolder, ImageReadError, InceptionV3FID,
                              InceptionWeightsError, extract_features, no_tf32, to_uint8)
from stylenas.metrics.inception import random_weights
from helpers import write_weights


def random_images(n, h, w, seed=0):
    return torch.randint(0, 256, (n, 3, h, w), dtype=torch.uint8, generator=torch.Generator().manual_seed(seed))


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    return write_weights(tmp_path_factory.mktemp("weights"))


@pytest.fixture(scope="module")
def net(weights):
    return InceptionV3FID(weights=weights)


@pytest.fixture
def no_weights_anywhere(monkeypatch, tmp_path):
    """An empty torch hub cache, no $STYLENAS_INCEPTION, and downloads that fail as offline."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))
    monkeypatch.delenv("STYLENAS_INCEPTION", raising=False)

    def offline(*args, **kwargs):
        raise urllib.error.URLError("[Errno -2] Name or service not known")

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", offline)
    return tmp_path / "torch_home" / "hub" / "checkpoints"


# --- weights lookup ------------------------------------------------------------------------------

def test_missing_weights_give_one_clear_error(no_weights_anywhere):
    with pytest.raises(InceptionWeightsError) as info:
        InceptionV3FID()
    message = str(info.value)
    assert "\n" not in message
    for part in (WEIGHTS_FILE, str(no_weights_anywhere), "--inception", "STYLENAS_INCEPTION", "download failed"):
        assert part in message


def test_weights_routes(no_weights_anywhere, weights, monkeypatch, tmp_path):
    expected = torch.load(weights, weights_only=True)["fc.weight"]
    # 1. an explicit path
    assert torch.equal(InceptionV3FID(weights=weights).fc.weight, expected)
    # 2. $STYLENAS_INCEPTION
    monkeypatch.setenv("STYLENAS_INCEPTION", str(weights))
    assert torch.equal(InceptionV3FID().fc.weight, expected)
    monkeypatch.delenv("STYLENAS_INCEPTION")
    # 3. pytorch-fid's file in the torch hub cache ($TORCH_HOME/hub/checkpoints)
    cached = write_weights(no_weights_anywhere)
    assert torch.equal(InceptionV3FID().fc.weight, torch.load(cached, weights_only=True)["fc.weight"])
    cached.unlink()
    # 4. a download of pytorch-fid's URL
    urls = []
    monkeypatch.setattr(torch.hub, "load_state_dict_from_url",
                        lambda url, **kw: urls.append((url, kw.get("weights_only"))) or torch.load(weights))
    assert torch.equal(InceptionV3FID().fc.weight, expected)
    assert urls == [(WEIGHTS_URL, True)]


def test_explicit_path_wins_over_environment(weights, monkeypatch, tmp_path):
    monkeypatch.setenv("STYLENAS_INCEPTION", str(tmp_path / "nowhere.pth"))
    InceptionV3FID(weights=weights)  # the argument is used, the broken variable never read
    with pytest.raises(InceptionWeightsError, match="STYLENAS_INCEPTION=.*file not found"):
        InceptionV3FID()


def test_bad_weights_files(tmp_path):
    with pytest.raises(InceptionWeightsError, match="file not found"):
        InceptionV3FID(weights=tmp_path / "missing.pth")
    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(b"not a checkpoint")
    with pytest.raises(InceptionWeightsError, match="cannot read"):
        InceptionV3FID(weights=garbage)
    other = tmp_path / "resnet.pth"
    torch.save(torchvision.models.resnet18(weights=None).state_dict(), other)
    with pytest.raises(InceptionWeightsError, match="not pytorch-fid's FID Inception"):
        InceptionV3FID(weights=other)
    state = random_weights()
    state["fc.weight"] = state["fc.weight"][:1000]  # torchvision's 1000-class head
    with pytest.raises(InceptionWeightsError, match="shapes"):
        InceptionV3FID(weights=state)


# --- the network ----------------------------------------------------------------------------------

class _TFPooling:
    """torch.nn.functional with TF's pooling, to run torchvision's own Inception code as an oracle:
    average pools ignore the padding; a max pool instead where `max_pool` is set (Mixed_7c)."""

    def __init__(self):
        self.max_pool = False

    def __getattr__(self, name):
        return getattr(F, name)

    def avg_pool2d(self, x, kernel_size, stride=None, padding=0, **kwargs):
        if self.max_pool:
            return F.max_pool2d(x, kernel_size, stride, padding)
        return F.avg_pool2d(x, kernel_size, stride, padding, count_include_pad=False)


def test_features_match_torchvision_forward_with_tf_pooling(net, weights, monkeypatch):
    oracle = torchvision.models.inception_v3(weights=None, num_classes=1008, aux_logits=False, init_weights=False)
    oracle.load_state_dict(torch.load(weights, weights_only=True), strict=False)
    oracle.eval()
    pooling = _TFPooling()
    monkeypatch.setattr(torchvision.models.inception, "F", pooling)
    oracle.Mixed_7c.register_forward_pre_hook(lambda *_: setattr(pooling, "max_pool", True))
    oracle.Mixed_7c.register_forward_hook(lambda *_: setattr(pooling, "max_pool", False))
    pooled = []
    oracle.avgpool.register_forward_hook(lambda module, inputs, output: pooled.append(output.flatten(1)))

    images = random_images(3, 37, 45)
    # pytorch-fid's input protocol, written out: [0, 1], bilinear to 299 without antialiasing, [-1, 1].
    x = F.interpolate(images.float() / 255, size=(299, 299), mode="bilinear", align_corners=False)
    with torch.no_grad():
        logits = oracle(2 * x - 1)
    out = net(images)
    assert out.features.shape == (3, 2048) and out.logits.shape == out.logits_unbiased.shape == (3, 1008)
    torch.testing.assert_close(out.features, pooled[0], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(out.logits, logits, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(out.logits_unbiased, out.features @ net.fc.weight.T, rtol=1e-6, atol=1e-6)
    assert out.features.std(0).mean() > 1e-3  # random weights still give image-dependent features


def test_features_match_pytorch_fid(weights, monkeypatch, tmp_path, net):
    inception = pytest.importorskip("pytorch_fid.inception")
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    (tmp_path / "hub" / "checkpoints").mkdir(parents=True)
    (tmp_path / "hub" / "checkpoints" / WEIGHTS_FILE).symlink_to(weights)
    reference = inception.InceptionV3([inception.InceptionV3.BLOCK_INDEX_BY_DIM[2048]]).eval()
    images = random_images(4, 29, 31, seed=1)
    with torch.no_grad():
        expected = reference(images.float() / 255)[0].flatten(1)
    torch.testing.assert_close(net(images).features, expected, rtol=1e-5, atol=1e-5)


def test_input_checks_and_any_size(net):
    with pytest.raises(ValueError, match="uint8"):
        net(torch.rand(1, 3, 32, 32))
    with pytest.raises(ValueError, match="uint8"):
        net(random_images(1, 32, 32)[:, :1])
    assert net(random_images(1, 299, 299)).features.shape == (1, 2048)
    assert net(random_images(2, 8, 300)).features.shape == (2, 2048)
    assert not any(p.requires_grad for p in net.parameters()) and not net.training


def _tf32_flags():
    if hasattr(torch.backends.cuda.matmul, "fp32_precision"):
        return torch.backends.cuda.matmul.fp32_precision, torch.backends.cudnn.conv.fp32_precision
    return torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32


def test_tf32_off_while_running_and_restored(net):
    before = _tf32_flags()
    inside = []
    handle = net.Conv2d_1a_3x3.register_forward_pre_hook(lambda *_: inside.append(_tf32_flags()))
    try:
        if hasattr(torch.backends.cuda.matmul, "fp32_precision"):
            torch.backends.cuda.matmul.fp32_precision = "tf32"
            torch.backends.cudnn.conv.fp32_precision = "tf32"
            on, off = ("tf32", "tf32"), ("ieee", "ieee")
        else:
            torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True
            on, off = (True, True), (False, False)
        net(random_images(1, 16, 16))
        assert inside == [off]
        assert _tf32_flags() == on
        with pytest.raises(RuntimeError):
            with no_tf32():
                raise RuntimeError  # flags come back on errors too
        assert _tf32_flags() == on
    finally:
        handle.remove()
        if hasattr(torch.backends.cuda.matmul, "fp32_precision"):
            torch.backends.cuda.matmul.fp32_precision, torch.backends.cudnn.conv.fp32_precision = before
        else:
            torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = before


def test_to_uint8_quantises_like_saved_images():
    x = torch.tensor([-1.5, -1.0, 0.0, 0.999, 1.0, 2.0]).view(1, 1, 1, 6)
    assert to_uint8(x).flatten().tolist() == [0, 0, 128, 255, 255, 255]
    assert to_uint8(torch.tensor([0.5]).view(1, 1, 1, 1), value_range=(0, 1)).item() == 128


# --- images in, features out ----------------------------------------------------------------------

def _write_folder(root, sizes, seed=0):
    rng = np.random.default_rng(seed)
    (root / "nested").mkdir(parents=True)
    names = []
    for k, (h, w) in enumerate(sizes):
        name = root / ("nested" if k % 2 else ".") / f"img{k}.{('png', 'JPG', 'bmp')[k % 3]}"
        mode = "L" if k == 1 else "RGB"
        shape = (h, w) if mode == "L" else (h, w, 3)
        Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8), mode=mode).save(name)
        names.append(name.resolve())
    (root / "notes.txt").write_text("not an image")
    return names


def test_image_folder_and_extraction_with_mixed_sizes(net, tmp_path):
    _write_folder(tmp_path, [(16, 16), (16, 16), (20, 24), (16, 16), (16, 16)])
    assert len(ImageFolder(tmp_path)) == 3  # like pytorch-fid: the files directly inside
    folder = ImageFolder(tmp_path, recursive=True)
    assert len(folder) == 5 and all(f.suffix.lower() in (".png", ".jpg", ".bmp") for f in folder.files)
    assert folder.files == sorted(folder.files)
    grey = folder.files.index((tmp_path / "nested" / "img1.JPG").resolve())
    assert folder[grey].shape == (3, 16, 16) and folder[grey].dtype == torch.uint8  # grey -> RGB
    seen = []
    stats, feats, logits = extract_features(net, folder, batch_size=3, progress=seen.append, keep_features=True,
                                            keep_logits=True)
    assert seen == [3, 2] and stats.n == 5
    one_by_one = [net(folder[k][None]) for k in range(5)]
    torch.testing.assert_close(feats, torch.cat([o.features for o in one_by_one]), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(logits, torch.cat([o.logits_unbiased for o in one_by_one]), rtol=1e-5, atol=1e-5)
    mu, sigma = stats.stats()
    np.testing.assert_allclose(mu, feats.double().mean(0).numpy(), rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(sigma, np.cov(feats.double().numpy(), rowvar=False), rtol=1e-7, atol=1e-10)


def test_unreadable_image_names_the_file(net, tmp_path):
    _write_folder(tmp_path, [(16, 16), (16, 16)])
    (tmp_path / "broken.png").write_bytes(b"\x89PNG not really")
    with pytest.raises(ImageReadError, match="broken.png: cannot read the image"):
        extract_features(net, ImageFolder(tmp_path), batch_size=2)
