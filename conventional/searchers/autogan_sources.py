"""Where every AutoGAN setting comes from: the search's ``SOURCES`` (the fields of
``searchers.autogan.AutoGANPreset`` and the run's options) and the retraining's ``RETRAIN_SOURCES``,
cited to VITA-Group/AutoGAN (file and line of the fetched checkout). ``DIR/config.json`` records them
and docs/sources.md is rendered from them (``python -m stylenas.docs_tables``)."""

from __future__ import annotations

from ...config_sources import Entry, choice, code
from ..sources import OPERATIONAL, TINY, with_changes
from ..train import RETRAIN_SOURCES as TRAIN_SOURCES
from .common import SEARCH_RUN_SOURCES

SH = "VITA-Group/AutoGAN exps/autogan_search.sh"
CFG = "VITA-Group/AutoGAN cfg.py"
# where every search setting comes from (DIR/config.json; docs/sources.md is rendered from it)
SOURCES = {
    "iterations": Entry(code(f"{SH}: --max_search_iter 65"), {"tiny": TINY}),
    "grow_at": Entry(code(f"{SH}: --grow_step1 15 --grow_step2 35"), {"tiny": TINY}),
    "shared_epochs": Entry(code(f"{SH}: --shared_epoch 15 (functions.py train_shared: epochs over the data)")),
    "shared_steps": Entry(choice("None: shared_epochs passes over the data, as the authors' train_shared"),
                          {"tiny": TINY}),
    "ctrl_steps": Entry(code(f"{SH}: --ctrl_step 30"), {"tiny": TINY}),
    "ctrl_batch": Entry(code(f"{SH}: --ctrl_sample_batch 1"), {"tiny": TINY}),
    "num_candidates": Entry(code(f"{SH}: --num_candidate 10"), {"tiny": TINY}),
    "topk": Entry(code(f"{SH}: --topk 5"), {"tiny": TINY}),
    "gf_dim": Entry(code(f"{SH}: --gf_dim 128"), {"tiny": TINY}),
    "df_dim": Entry(code(f"{SH}: --df_dim 64"), {"tiny": TINY}),
    "latent_dim": Entry(code(f"{SH}: --latent_dim 128"), {"tiny": TINY}),
    "g_batch": Entry(code(f"{SH}: -gen_bs 128"), {"tiny": TINY}),
    "d_batch": Entry(code(f"{SH}: -dis_bs 64"), {"tiny": TINY}),
    "n_critic": Entry(code(f"{SH}: --n_critic 5"), {"tiny": TINY}),
    "lr": Entry(code(f"{SH}: --g_lr 0.0002 --d_lr 0.0002")),
    "betas": Entry(code(f"{SH}: --beta1 0.0 --beta2 0.9")),
    "ctrl_lr": Entry(code(f"{CFG} line 40: --ctrl_lr 3.5e-4")),
    "ctrl_betas": Entry(code(f"search.py create_ctrler (lines 52-56): Adam(..., args.ctrl_lr, (args.beta1, "
                             f"args.beta2)) with {SH}'s --beta1 0.0 --beta2 0.9")),
    "hidden": Entry(code(f"{CFG} line 169: --hid_size 100")),
    "entropy": Entry(code(f"{CFG} line 193: --entropy_coeff 1e-3, added to the reward before the baseline "
                          "(functions.py train_controller, lines 268-270)"),
                     deviation="the entropy of each decision is averaged over the decisions and the loss is 1/T of "
                               "the authors' (their (1, T) x (T, 1) broadcast); Adam makes the factor moot",
                     restore="not offered (equal updates up to Adam's epsilon)"),
    "baseline_decay": Entry(code(f"{CFG} line 172: --baseline_decay 0.9")),
    "baseline": Entry(code("functions.py train_controller line 246: baseline = None at every controller phase "
                           "('phase'); 'persistent' keeps one EMA over the search")),
    "reward_num": Entry(code(f"{CFG} line 177: --rl_num_eval_img 5000"), {"tiny": TINY}),
    "is_splits": Entry(code("utils/inception_score.py line 28: get_inception_score(images, splits=10)"),
                       {"tiny": TINY}),
    "bn_samples": Entry(choice("BatchNorm statistics recomputed on this many latents before a candidate's reward"),
                        {"tiny": TINY},
                        deviation="the authors score every candidate with the shared GAN's running statistics, "
                                  "which other architectures set",
                        restore="not offered (it biases the reward)"),
    "fid_reference_num": Entry(choice("real images of the FID reward's training statistics (the authors never "
                                      "released the FID reward)"), {"tiny": TINY}),
    "eval_batch": Entry(OPERATIONAL, {"tiny": TINY}),
    "reset_window": Entry(code(f"{CFG} line 199: --dynamic_reset_window 500")),
    "reset_threshold": Entry(code(f"{CFG} line 196: --dynamic_reset_threshold 1e-3")),
    "preset": Entry(choice("--preset paper: the authors' autogan_search.sh"), {"tiny": TINY}),
    "reward": Entry(code("functions.py train_controller: the IS of get_is; 'fid' is the paper's FID variant "
                         "(section 3.3), whose code was not released")),
    "proxy": Entry(choice("--proxy scores with a random-weight Inception (CPU tests, demo), labelled proxy")),
    **SEARCH_RUN_SOURCES,
    "processes": Entry(choice("torchrun processes; they share the rewards (same result as one)")),
}
# command-line options of search-conventional behind preset fields
OPTIONS = {"reward_num": "--reward-num", "ctrl_batch": "--ctrl-batch", "baseline": "--baseline",
           "iterations": "--iters"}

# retraining an AutoGAN genotype: the authors' exps/autogan_cifar10_{a,b,c}.sh
RETRAIN_SOURCES = with_changes(TRAIN_SOURCES, lr_schedule=Entry(
    code("exps/autogan_cifar10_a.sh passes no --lr_decay, so train.py (line 144) trains without its "
         "LinearLrDecay: a constant rate (--lr-schedule linear: that decay)"),
    deviation=None, restore=None))
