"""ADA's augmentation pipe and p controller (stylenas.train.augment) against NVlabs stylegan2-ada-pytorch's
outputs (tests/data/augment, made by the script there from a checkout), against the definitions of the
transforms (matrices and colours by hand in numpy), and for gradients, sampling rates and sharding."""
import math
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from stylenas.train.augment import AUGPIPES, SYM2, SYM6, AdaController, AugmentPipe, filter_bank

pytestmark = pytest.mark.usefixtures("one_thread")

REFERENCE = Path(__file__).parent / "data" / "augment" / "nvlabs_reference.npz"
GEOMETRY = dict(xflip=1, rotate90=1, xint=1, scale=1, rotate=1, aniso=1, xfrac=1)


def rand_images(n=3, size=16, seed=0, channels=3):
    return torch.rand([n, channels, size, size], generator=torch.Generator().manual_seed(seed)) * 2 - 1


# ------------------------------------------------------------------------------------ constants

def test_wavelet_filters_are_orthonormal_lowpass():
    """sym2 / sym6 as tabulated: taps sum to sqrt(2), unit energy, orthogonal to their even shifts."""
    for taps in (SYM2, SYM6):
        h = np.asarray(taps)
        assert h.sum() == pytest.approx(math.sqrt(2), abs=1e-12)
        for shift in range(0, len(h) // 2):
            assert np.dot(h[:len(h) - 2 * shift], h[2 * shift:]) == pytest.approx(float(shift == 0), abs=1e-11)


def test_filter_bank_partitions_the_spectrum():
    bank = filter_bank(SYM2)
    assert bank.shape == (4, 43)
    impulse = np.zeros(43)
    impulse[21] = 1
    np.testing.assert_allclose(bank.sum(0), impulse, atol=1e-12)  # gains of 1 leave an image unchanged
    response = np.abs(np.fft.rfft(bank, 1024, axis=1))  # band 0 the lowest octave, band 3 the highest
    peaks = [np.fft.rfftfreq(1024)[np.argmax(r)] for r in response]
    assert peaks == sorted(peaks) and peaks[0] < 1 / 16 and peaks[3] > 1 / 4


# ------------------------------------------------------------------------------------ p = 0

@pytest.mark.parametrize("name", sorted(AUGPIPES))
def test_p_zero_is_exactly_the_identity(name):
    pipe = AugmentPipe.from_name(name, p=0.0)
    images = rand_images(size=24)
    out = pipe(images, torch.Generator().manual_seed(1))
    assert torch.equal(out, images)


def test_unknown_augpipe_is_one_clear_error():
    with pytest.raises(ValueError, match="--augpipe must be one of .*bgc"):
        AugmentPipe.from_name("bgx")


# ------------------------------------------------------------------------------------ NVlabs' outputs

def reference_cases():
    data = np.load(REFERENCE)
    return sorted({key.split("/")[0] for key in data.files if "/" in key})


@pytest.mark.parametrize("case", reference_cases())
def test_each_transform_equals_nvlabs(case):
    """One transform at p = 1 with NVlabs' debug-percentile parameters (and the bgc / bgc+filter+cutout
    pipes with all of them at once, which pins the composition order) vs its AugmentPipe's output."""
    data = np.load(REFERENCE)
    params = {key.split("/")[2]: torch.from_numpy(data[key]).float() for key in data.files
              if key.startswith(f"{case}/param/")}
    out = AugmentPipe().apply(torch.from_numpy(data["input"]), params)
    np.testing.assert_allclose(out.numpy(), data[f"{case}/output"], atol=1e-5, rtol=0)


# ------------------------------------------------------------------------------------ geometry by hand

def np_rotation(angle):
    c, s = math.cos(angle), math.sin(angle)
    return np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]])


def np_translation(tx, ty):
    return np.array([[1, 0, tx], [0, 1, ty], [0, 0, 1.0]])


def np_scaling(sx, sy):
    return np.diag([sx, sy, 1.0])


def test_geometric_matrix_is_the_inverse_of_the_composed_transforms():
    """Forward maps (input -> output pixel coordinates, origin at the centre, y down), composed in the
    pipe's order by hand, then inverted: x-flip negates x; 90-degree turn k and the pre/post rotations
    by theta map with R(-angle) (so k = 1 is torch.rot90's turn, below); translations add; scalings
    multiply (anisotropic: x by s, y by 1/s)."""
    p = dict(xflip=1, rotate90=3, xint=(2, -1), scale=1.3, rotate_pre=0.4, aniso=0.8, rotate_post=-0.7,
             xfrac=(0.3, -0.6))
    forward = (np_translation(*p["xfrac"]) @ np_rotation(-p["rotate_post"]) @ np_scaling(p["aniso"], 1 / p["aniso"])
               @ np_rotation(-p["rotate_pre"]) @ np_scaling(p["scale"], p["scale"]) @ np_translation(*p["xint"])
               @ np_rotation(-math.pi / 2 * p["rotate90"]) @ np_scaling(-1, 1))
    params = {k: torch.tensor([v], dtype=torch.float32) for k, v in p.items()}
    ours = AugmentPipe(**GEOMETRY).geometric_matrix(params, 16, 16)[0].double().numpy()
    np.testing.assert_allclose(ours, np.linalg.inv(forward), atol=1e-5)
    for name in ("rotate_pre", "scale", "aniso", "xfrac"):  # and one at a time
        alone = {name: params[name]} if name != "rotate_pre" else {name: params[name], "rotate_post": torch.zeros(1)}
        single = {"rotate_pre": np_rotation(-p["rotate_pre"]), "scale": np_scaling(p["scale"], p["scale"]),
                  "aniso": np_scaling(p["aniso"], 1 / p["aniso"]), "xfrac": np_translation(*p["xfrac"])}[name]
        np.testing.assert_allclose(AugmentPipe().geometric_matrix(alone, 16, 16)[0].double().numpy(),
                                   np.linalg.inv(single), atol=1e-6)


def test_integer_translation_is_a_shift_with_reflected_borders():
    images = rand_images(n=2)
    shift = torch.tensor([[3.0, -2.0], [-1.0, 4.0]])  # (x, y) pixels
    out = AugmentPipe(xint=1).apply(images, {"xint": shift})
    for i, (tx, ty) in enumerate(shift.long().tolist()):
        padded = F.pad(images[i:i + 1], [8, 8, 8, 8], mode="reflect")  # out[y, x] = in[y - ty, x - tx]
        expected = padded[:, :, 8 - ty:8 - ty + 16, 8 - tx:8 - tx + 16]
        torch.testing.assert_close(out[i:i + 1], expected, atol=1e-5, rtol=0)


def smooth_pattern(size, dtype=torch.float32):
    """A band-limited image f(x, y) on centred pixel coordinates, with its analytic formula."""
    def f(x, y):
        return (torch.cos(2 * math.pi * (x * 1.0 + y * 0.5) / size)
                + 0.5 * torch.sin(2 * math.pi * (-0.5 * x + 0.75 * y) / size))

    grad_max = 2 * math.pi / size * (math.hypot(1, 0.5) + 0.5 * math.hypot(0.5, 0.75))
    c = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    y, x = torch.meshgrid(c, c, indexing="ij")
    return f(x, y)[None, None].to(dtype), f, x, y, grad_max


def test_flip_and_quarter_turns_match_torch_within_a_tenth_of_a_pixel():
    """The blits run through the same resampling as every geometric transform (one matrix per image, as
    NVlabs does). sym6 is not symmetric, so up-sampling, mirroring and down-sampling moves content by up
    to ~0.1 px along each mirrored axis (NVlabs' outputs do the same: see test_each_transform_equals_nvlabs):
    on a smooth image the result is torch.flip / torch.rot90 to within that displacement times the
    largest gradient."""
    image, _, _, _, grad_max = smooth_pattern(16)
    images = image.expand(2, 3, 16, 16)
    bound = 0.1 * grad_max
    out = AugmentPipe(xflip=1).apply(images, {"xflip": torch.tensor([1.0, 0.0])})
    assert (out[0] - images[0].flip(2)).abs().max() < bound
    assert (out[1] - images[1]).abs().max() < 1e-5  # not selected: resampled with the identity
    for k, mirrored_axes in ((1, 1), (2, 2), (3, 1)):  # a quarter turn is a transposition (exact) and a flip
        out = AugmentPipe(rotate90=1).apply(images, {"rotate90": torch.full([2], float(k))})
        assert (out - torch.rot90(images, k, dims=(2, 3))).abs().max() < bound * math.sqrt(mirrored_axes), k


@pytest.mark.parametrize("name", ["xfrac", "rotate", "scale", "aniso"])
def test_general_geometry_resamples_a_smooth_image_at_the_mapped_points(name):
    """Away from the borders, out(x, y) = f(G_inv (x, y)) for the analytic band-limited f."""
    size = 16
    image, f, x, y, _ = smooth_pattern(size)
    params = {"xfrac": {"xfrac": torch.tensor([[0.3, -0.6]])},
              "rotate": {"rotate_pre": torch.tensor([0.5]), "rotate_post": torch.tensor([-0.2])},
              "scale": {"scale": torch.tensor([1.25])},
              "aniso": {"aniso": torch.tensor([0.85])}}[name]
    pipe = AugmentPipe()
    inverse = pipe.geometric_matrix(params, size, size)[0].double()
    sx = inverse[0, 0] * x + inverse[0, 1] * y + inverse[0, 2]
    sy = inverse[1, 0] * x + inverse[1, 1] * y + inverse[1, 2]
    out = pipe.apply(image, params)[0, 0].double()
    inner = slice(4, size - 4)
    assert (out - f(sx, sy))[inner, inner].abs().max() < 0.03  # the pattern spans [-1.5, 1.5]


# ------------------------------------------------------------------------------------ colour by hand

V = np.ones(3) / math.sqrt(3)


def np_hue(rgb, theta):
    """Rodrigues' rotation of rgb about the luma axis v."""
    return rgb * math.cos(theta) + np.cross(V, rgb) * math.sin(theta) + V * (V @ rgb) * (1 - math.cos(theta))


COLOUR_BY_HAND = {
    "brightness": (0.15, lambda rgb, b: rgb + b),
    "contrast": (1.4, lambda rgb, c: rgb * c),
    "lumaflip": (1.0, lambda rgb, i: rgb - 2 * i * (rgb.mean()) * np.ones(3)),  # Householder: I - 2 v v^T
    "hue": (2.1, np_hue),
    "saturation": (0.3, lambda rgb, s: rgb.mean() + s * (rgb - rgb.mean())),
}


def constant_images(colours, size=4):
    return torch.tensor(colours, dtype=torch.float32)[:, :, None, None].expand(-1, 3, size, size).contiguous()


@pytest.mark.parametrize("name", sorted(COLOUR_BY_HAND))
def test_colour_transform_on_constant_images(name):
    colours = [[0.2, -0.5, 0.7], [-0.9, 0.1, 0.3]]
    value, by_hand = COLOUR_BY_HAND[name]
    out = AugmentPipe().apply(constant_images(colours), {name: torch.tensor([value, value])})
    for i, rgb in enumerate(colours):
        expected = by_hand(np.asarray(rgb), value)
        np.testing.assert_allclose(out[i].numpy(), np.broadcast_to(expected[:, None, None], (3, 4, 4)), atol=1e-6)


def test_hue_turn_of_a_third_cycles_the_primaries_and_colour_order_is_brightness_first():
    out = AugmentPipe().apply(constant_images([[1.0, 0.0, 0.0]]), {"hue": torch.tensor([2 * math.pi / 3])})
    np.testing.assert_allclose(out[0, :, 0, 0].numpy(), [0, 1, 0], atol=1e-6)  # red -> green
    rgb, p = np.array([0.2, -0.5, 0.7]), dict(brightness=0.1, contrast=1.3, lumaflip=1.0, hue=0.8, saturation=0.6)
    expected = rgb
    for name in ("brightness", "contrast", "lumaflip", "hue", "saturation"):
        expected = COLOUR_BY_HAND[name][1](expected, p[name])
    out = AugmentPipe().apply(constant_images([rgb.tolist()]), {k: torch.tensor([v]) for k, v in p.items()})
    np.testing.assert_allclose(out[0, :, 0, 0].numpy(), expected, atol=1e-6)


def test_noise_and_cutout():
    images = rand_images(n=2, size=8)
    noise = torch.randn([2, 3, 8, 8], generator=torch.Generator().manual_seed(3))
    out = AugmentPipe(noise=1).apply(images, {"noise_std": torch.tensor([0.0, 0.1]), "noise": noise})
    assert torch.equal(out[0], images[0]) and torch.allclose(out[1], images[1] + 0.1 * noise[1])
    out = AugmentPipe(cutout=1).apply(images, {"cutout_size": torch.tensor([0.5, 0.0]),
                                               "cutout_centre": torch.tensor([[0.25, 0.75], [0.5, 0.5]])})
    # pixel centres (i + 0.5) / 8 within 0.25 of (0.25, 0.75): columns 0..3, rows 4..7
    assert (out[0, :, 4:, :4] == 0).all() and torch.equal(out[0, :, :4], images[0, :, :4])
    assert torch.equal(out[0, :, :, 4:], images[0, :, :, 4:]) and torch.equal(out[1], images[1])


def test_imgfilter_on_too_small_images_is_one_clear_error():
    with pytest.raises(ValueError, match="imgfilter augmentation needs images of at least 22 px"):
        AugmentPipe(imgfilter=1, p=1.0)(rand_images(size=16), torch.Generator().manual_seed(0))


# ------------------------------------------------------------------------------------ gradients

def test_gradients_flow_through_the_whole_pipe():
    """gradcheck in float64 (first order: G learns through augmented fakes) for bgc with every transform
    active, and gradgradcheck of the geometric part (R1 differentiates D(augment(x)) twice)."""
    p = dict(xflip=1.0, rotate90=1.0, xint=[[1.0, -1.0]], scale=1.1, rotate_pre=0.3, aniso=0.9, rotate_post=-0.2,
             xfrac=[[0.3, 0.2]], brightness=0.1, contrast=1.2, lumaflip=1.0, hue=0.7, saturation=0.8)
    params = {k: torch.tensor(v if isinstance(v, list) else [v]) for k, v in p.items()}
    pipe = AugmentPipe.from_name("bgc")
    x = torch.randn([1, 3, 8, 8], dtype=torch.float64, generator=torch.Generator().manual_seed(0), requires_grad=True)
    assert torch.autograd.gradcheck(lambda images: pipe.apply(images, params), (x,))
    geometric = {k: v for k, v in params.items() if k in ("xflip", "rotate90", "xint", "scale", "rotate_pre", "aniso",
                                                           "rotate_post", "xfrac")}
    x1 = x[:, :1].detach().clone().requires_grad_(True)
    assert torch.autograd.gradgradcheck(lambda images: pipe.apply(images, geometric), (x1,))


# ------------------------------------------------------------------------------------ sampling

@pytest.mark.parametrize("p", [1.0, 0.3])
def test_each_transform_is_applied_with_probability_multiplier_times_p(p):
    pipe = AugmentPipe.from_name("bgcfnc", p=p)
    n = 4000
    params = pipe.sample(n, (3, 32, 32), torch.Generator().manual_seed(5))
    identity = {"xflip": 0, "rotate90": 0, "scale": 1, "aniso": 1, "brightness": 0, "contrast": 1, "lumaflip": 0,
                "hue": 0, "saturation": 1, "noise_std": 0, "cutout_size": 0}
    # x-flip, 90-degree turns, luma flip: the chosen value is itself random (half the flips are "no flip")
    share = {"xflip": 1 / 2, "rotate90": 3 / 4, "lumaflip": 1 / 2}
    for name, value in identity.items():
        rate = float((params[name] != value).float().mean())
        assert rate == pytest.approx(p * share.get(name, 1), abs=0.03), name
    rotated = ((params["rotate_pre"] != 0) | (params["rotate_post"] != 0)).float().mean()
    assert float(rotated) == pytest.approx(p, abs=0.03)  # pre OR post with probability p
    assert float((params["xint"].abs() <= 0.125 * 32).float().mean()) == 1
    assert float((params["imgfilter"] != 1).float().mean()) == pytest.approx(p, abs=0.03)


def test_a_shard_augments_its_rows_of_the_global_batch():
    """Process r of w, given rows r, r + w, ... of the global batch, produces those rows of the 1-process
    output: the draws are made for the global batch and the padding computed over all of it."""
    pipe = AugmentPipe.from_name("bgc", p=0.8)
    images = rand_images(n=4, size=16, seed=7)
    whole = pipe(images, torch.Generator().manual_seed(11))
    for rank in range(2):
        part = pipe(images[rank::2], torch.Generator().manual_seed(11), batch=4, rows=slice(rank, None, 2))
        torch.testing.assert_close(part, whole[rank::2], atol=1e-6, rtol=0)
    again = pipe(images, torch.Generator().manual_seed(11))
    assert torch.equal(again, whole)  # the same generator state, the same augmentation
    assert not torch.allclose(pipe(images, torch.Generator().manual_seed(12)), whole)


# ------------------------------------------------------------------------------------ ADA controller

def test_ada_controller_follows_nvlabs_formula():
    """NVlabs: every ada_interval steps p += sign(mean sign(D(reals)) - target) * batch * interval /
    (ada_kimg * 1000), floored at 0; the mean is over every real logit reported since the last change."""
    pipe = AugmentPipe.from_name("bgc")
    ada = AdaController(target=0.6, interval=4, ada_kimg=500, batch=32)
    step = 32 * 4 / 500_000
    positive, negative = torch.full([8, 1], 2.0), torch.full([8, 1], -1.0)
    for steps_done in range(1, 13):  # D overfits: real logits all positive
        ada.observe(positive)
        ada.maybe_adjust(pipe, steps_done)
        assert float(pipe.p) == pytest.approx(step * (steps_done // 4), rel=1e-6)
    for steps_done in range(13, 41):  # below the target: p falls back and stays clamped at 0
        ada.observe(negative)
        ada.maybe_adjust(pipe, steps_done)
    assert float(pipe.p) == 0
    # mixed signs: 5 of 8 positive -> mean 0.25 < 0.6: down; 7 of 8 -> 0.75 > 0.6: up
    pipe.p.fill_(0.5)
    ada.observe(torch.tensor([1.0] * 5 + [-1.0] * 3))
    ada.maybe_adjust(pipe, 44)
    assert float(pipe.p) == pytest.approx(0.5 - step, rel=1e-6)
    ada.observe(torch.tensor([1.0] * 7 + [-1.0]))
    ada.maybe_adjust(pipe, 47)  # not a multiple of 4: nothing yet
    assert float(pipe.p) == pytest.approx(0.5 - step, rel=1e-6)
    ada.maybe_adjust(pipe, 48)
    assert float(pipe.p) == pytest.approx(0.5, rel=1e-6)
    ada.observe(torch.tensor([1.0, 1.0, 1.0, -1.0, 1.0, -1.0, 1.0, 1.0, 1.0, -1.0]))  # mean sign 0.4: down
    ada.maybe_adjust(pipe, 52)
    assert float(pipe.p) == pytest.approx(0.5 - step, rel=1e-6)
    exact = AdaController(target=0.5, interval=1, batch=4)
    pipe.p.fill_(0.25)
    exact.observe(torch.tensor([1.0, 1.0, 1.0, -1.0]))  # mean sign 0.5 == target: no change
    exact.maybe_adjust(pipe, 1)
    assert float(pipe.p) == 0.25
