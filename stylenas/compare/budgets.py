"""Budget presets of ``stylenas compare``: one search budget (kimg of images processed by G and D),
one retraining recipe and one evaluation protocol per family, the same for every row.

The budget unit is device-independent: thousands of images that pass through G or through D
during a search (a generated image judged by D counts twice, a real image once). Each searcher
and the random search stop at the same unit count for a preset; wall-clock seconds and GPU-hours
are recorded beside it.

Presets:
- ``tiny``: the CPU tests and ``make demo`` (seconds per job; the numbers mean nothing).
- ``small``: a GPU-hour-scale comparison (alphaGAN's StyleGAN2 preset for 50 iterations).
- ``paper``: the papers' scale (alphaGAN's StyleGAN2 search: 500 iterations of T=20, R=5, S=20 at
  batch 2; retraining with NVlabs' ``auto`` config; 50k generated images against the whole data set).
"""
from dataclasses import asdict, dataclass, field


@dataclass(frozen=True)
class Budget:
    name: str
    search_preset: str  # the StyleGAN2 searcher's preset (stylenas.search.PRESETS)
    search_iters: int  # alphaGAN iterations; sets the kimg budget of every method of the family
    candidate_kimg: float  # real kimg each random-search candidate trains for (the shared recipe)
    candidate_fid_num: int  # generated images behind a candidate's search-time FID
    retrain_cfg: str  # stylenas train --cfg of the shared retraining
    retrain_kimg: float  # real kimg of the shared retraining
    eval_num: int  # generated images per row (FID, IS, KID, PRDC)
    eval_num_ref: int | None  # reference images (None: all of the data)
    search_workers: int = 0  # data-loading processes of the searches and trainings
    # the conventional family: each searcher's options of `stylenas search-conventional`, the random
    # search's budget (kimg through G and D, measured), a candidate's G steps, and the retraining's
    # options of `stylenas train-conventional` (one loss for every row)
    conventional: dict = field(default_factory=dict)

    def to_dict(self):
        return asdict(self)


BUDGETS = {
    "tiny": Budget("tiny", search_preset="tiny", search_iters=2, candidate_kimg=0.016, candidate_fid_num=12,
                   retrain_cfg="tiny", retrain_kimg=0.032, eval_num=12, eval_num_ref=12, conventional={
                       "search": {"alphagan": ["--preset", "tiny", "--iters", "2", "--sample-every", "0"],
                                  # 10 epochs of 16 images: at least one random candidate's cost
                                  # (0.144 kimg), so random search in DEGAS's space keeps to its budget
                                  "degas": ["--preset", "tiny", "--iters", "10", "--sample-every", "0"],
                                  "autogan": ["--preset", "tiny", "--proxy"], "agan": ["--preset", "tiny", "--proxy"],
                                  "dggan": ["--preset", "tiny", "--proxy", "--p", "1", "--top-k", "1",
                                            "--max-steps", "1"]},
                       "random_kimg": 0.3, "candidate_steps": 2, "retrain": ["--preset", "tiny", "--steps", "4"]}),
    "small": Budget("small", search_preset="stylegan2", search_iters=50, candidate_kimg=2.0, candidate_fid_num=2000,
                    retrain_cfg="auto", retrain_kimg=1000, eval_num=10000, eval_num_ref=None, search_workers=2,
                    conventional={
                        "search": {"alphagan": ["--preset", "s", "--iters", "20"], "degas": ["--iters", "10"],
                                   "autogan": ["--iters", "10"], "agan": ["--iters", "10", "--child-steps", "500"],
                                   "dggan": ["--preset", "small"]},
                        "random_kimg": 2000, "candidate_steps": 2000,
                        "retrain": ["--preset", "paper", "--steps", "10000"]}),
    "paper": Budget("paper", search_preset="stylegan2", search_iters=500, candidate_kimg=10.0,
                    candidate_fid_num=5000, retrain_cfg="auto", retrain_kimg=25000, eval_num=50000,
                    eval_num_ref=None, search_workers=2, conventional={
                        "search": {"alphagan": ["--preset", "s"], "degas": [], "autogan": [], "agan": [],
                                   "dggan": ["--preset", "paper"]},
                        "random_kimg": 20000, "candidate_steps": 5000, "retrain": ["--preset", "paper"]}),
}

# Images through G or D per real image of one StyleGAN2 training step (batch n): the D step
# (G makes n, D judges n fakes and n reals) and the G step (G makes n, D judges them); the lazy
# regularisers (R1 every 16 steps, path length every 4 at half batch) are left out.
TRAIN_IMAGES_PER_REAL = 5


def alphagan_iteration_images(preset):
    """Images through G or D in one alphaGAN iteration of `preset` (batch n): weight part, T x (D step
    3n + G step 2n); test-weight part, R x (D-bar step 3n) + R x (G-bar step 2n); architecture part,
    S x (V(G, D-bar) 3n + V(G-bar, D) 3n) (stylenas.search.alphagan.AlphaGANSearcher)."""
    n = preset.batch
    return n * (5 * preset.T + 5 * preset.R + 6 * preset.S)
