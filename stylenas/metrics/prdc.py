"""Improved precision and recall (Kynkaanniemi et al. 2019) and density and coverage (Naeem et al.
2020) of generated features against reference features.

Definitions, with real (reference) features X_1..X_N, fake (evaluated) features Y_1..Y_M, and
NND_k(X_i) the distance from X_i to its k-th nearest neighbour among the other reals (a duplicate
of X_i counts as a neighbour at distance 0):

  precision = 1/M sum_j 1[exists i: ||Y_j - X_i|| <= NND_k(X_i)]         (k = 3)
  recall    = 1/N sum_i 1[exists j: ||X_i - Y_j|| <= NND_k(Y_j)]         (k = 3, radii among fakes)
  density   = 1/(kM) sum_j sum_i 1[||Y_j - X_i|| < NND_k(X_i)]           (k = 5)
  coverage  = 1/N sum_i 1[min_j ||X_i - Y_j|| < NND_k(X_i)]              (k = 5)

Ball membership: precision and recall use the closed ball (<=), as Kynkaanniemi et al.'s
definition of f(phi, Phi) and NVlabs' stylegan2-ada-pytorch precision_recall.py do; density and
coverage use the open ball (<), as Naeem et al.'s released code (clovaai/generative-evaluation-prdc)
does (their paper writes B(x, r) without saying which). The two only differ on exact ties.

Distances are Euclidean, compared as squared distances |x|^2 + |y|^2 - 2 x.y computed in float64,
in row chunks so that 50k x 50k never materialises: each chunk is a [rows, N] block of at most
``max_bytes``. That expansion rounds (~1e-16 of the squared norms) differently in different
products, so a duplicated image would give two slightly different copies of one distance; values
within TIE_TOLERANCE x the largest squared norm of a radius are therefore treated as equal (a tie),
which is what the definitions say for duplicates, and is far below the gap between distinct
neighbours of real features.
"""
import torch

__all__ = ["PR_K", "DC_K", "prdc", "nearest_neighbour_radii"]

PR_K = 3  # Kynkaanniemi et al. 2019, section 3 ("k = 3 ... a good trade-off")
DC_K = 5  # Naeem et al. 2020, section 4 (k = 5)
DEFAULT_MAX_BYTES = 256 * 2 ** 20
TIE_TOLERANCE = 1e-10


def _as_features(x, name, device):
    x = torch.as_tensor(x).detach()
    if x.dim() != 2:
        raise ValueError(f"{name}: expected features [n, d], got shape {tuple(x.shape)}")
    return x.to(device, torch.float64)


def _squared_norms(x):
    return (x * x).sum(dim=1)


def _pairwise(x, y, x_norms, y_norms):
    """Squared Euclidean distances [len(x), len(y)] (float64, clamped at 0 against rounding)."""
    return (x_norms[:, None] + y_norms[None, :] - 2 * (x @ y.T)).clamp_min_(0)


def _chunks(rows, columns, max_bytes):
    """Slices of `rows` whose [chunk, columns] float64 block fits in max_bytes."""
    step = max(1, max_bytes // (8 * max(columns, 1)))
    for start in range(0, rows, step):
        yield slice(start, min(rows, start + step))


def nearest_neighbour_radii(x, ks, max_bytes=DEFAULT_MAX_BYTES):
    """{k: [n] squared distance of each row of x (float64) to its k-th nearest other row} for every k."""
    kmax = max(ks)
    if len(x) <= kmax:
        raise ValueError(f"k = {kmax} nearest neighbours need more than {kmax} samples, got {len(x)}")
    out = {k: torch.empty(len(x), dtype=torch.float64, device=x.device) for k in ks}
    norms = _squared_norms(x)
    for rows in _chunks(len(x), len(x), max_bytes):
        # the smallest kmax + 1 distances include the row's own 0 (or a duplicate's 0: the same value)
        nearest = torch.topk(_pairwise(x[rows], x, norms[rows], norms), kmax + 1, dim=1, largest=False).values
        for k in ks:
            out[k][rows] = nearest[:, k]
    return out


def prdc(fake, real, pr_k=PR_K, dc_k=DC_K, device=None, max_bytes=DEFAULT_MAX_BYTES):
    """{"precision", "recall", "density", "coverage"} of `fake` [M, d] against `real` [N, d].

    `device`: where the distances are computed (default: where `fake` lives). Deterministic:
    the same inputs give the same numbers for any `max_bytes`."""
    fake_t = torch.as_tensor(fake)
    device = fake_t.device if device is None else torch.device(device)
    y, x = _as_features(fake, "fake", device), _as_features(real, "real", device)
    if x.shape[1] != y.shape[1]:
        raise ValueError(f"fake and real features differ in dimension: {y.shape[1]} and {x.shape[1]}")
    real_radii = nearest_neighbour_radii(x, sorted({pr_k, dc_k}), max_bytes)
    fake_radii = nearest_neighbour_radii(y, [pr_k], max_bytes)[pr_k]

    x_norms, y_norms = _squared_norms(x), _squared_norms(y)
    tie = TIE_TOLERANCE * float(torch.cat([x_norms, y_norms]).max())
    closed_real, open_real = real_radii[pr_k][None] + tie, real_radii[dc_k] - tie
    closed_fake = fake_radii[None] + tie
    precise, density_count = 0, 0
    for rows in _chunks(len(y), len(x), max_bytes):  # fakes against the real balls
        d = _pairwise(y[rows], x, y_norms[rows], x_norms)
        precise += int((d <= closed_real).any(dim=1).sum())
        density_count += int((d < open_real[None]).sum())
    recalled, covered = 0, 0
    for rows in _chunks(len(x), len(y), max_bytes):  # reals against the fake balls
        d = _pairwise(x[rows], y, x_norms[rows], y_norms)
        recalled += int((d <= closed_fake).any(dim=1).sum())
        covered += int((d.min(dim=1).values < open_real[rows]).sum())
    m, n = len(y), len(x)
    return {"precision": precise / m, "recall": recalled / n, "density": density_count / (dc_k * m),
            "coverage": covered / n}
