"""``stylenas compare``: every GAN architecture searcher on the same data and budget, each genotype
retrained and scored with one recipe, random search in each searcher's space as the baseline, and a
leaderboard (docs/compare.md)."""
from .budgets import BUDGETS, Budget
from .families import FAMILIES, CompareError
from .random_search import random_search, sample_stylegan2

__all__ = ["BUDGETS", "Budget", "CompareError", "FAMILIES", "compare", "random_search", "sample_stylegan2"]


def compare(*args, **kwargs):
    """See ``stylenas.compare.run.compare``."""
    from .run import compare as run

    return run(*args, **kwargs)
