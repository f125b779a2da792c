"""Small helpers shared by test modules (`from helpers import ...`; pytest puts tests/ on sys.path)."""
import torch


def images(n=24, size=16, seed=0):
    """n random uint8 [3, size, size] images, the same for the same seed."""
    gen = torch.Generator().manual_seed(seed)
    return [torch.randint(0, 256, (3, size, size), dtype=torch.uint8, generator=gen) for _ in range(n)]


def quiet(line):
    """A log callback that drops its line."""
