"""Frozen reference values for tests/test_nvlabs_loss.py, produced by NVlabs stylegan2-ada-pytorch's own
``training/training_loop.py`` (its phases, lazy-regularisation Adam correction, gains, gradient
accumulation, NaN clean-up and EMA) over its own ``training/loss.py`` ``StyleGAN2Loss`` and
``training/networks.py`` networks, run on the CPU (its ops fall back to their reference code there).

Rerun (writes reference.pt beside this file; a checkout of https://github.com/NVlabs/stylegan2-ada-pytorch,
commit d72cc7d was used):

    .venv/bin/python tests/data/nvlabs_loss/make_reference.py /path/to/stylegan2-ada-pytorch

Nothing of NVlabs' code is changed or copied: the script only
- stands in for what a CPU run lacks (``torch.device('cuda')``, CUDA events, pinned memory, the
  ``psutil``/``requests`` modules used for logging and downloads) and for what newer PyTorch
  changed (``Sampler.__init__`` no longer takes the data source),
- builds NVlabs' networks at a tiny size, perturbs their weights (biases and noise strengths start
  at 0) and hands them to the training loop as its ``resume_pkl``,
- records, without altering them, NVlabs' random draws (the latents the loop passes to
  ``accumulate_gradients``, the style-mixing crossover, the mixing latents, the noise inputs, the
  path-length noise: wrappers around ``torch`` in ``training.loss`` and ``training.networks`` that
  call the real function and keep its result), every phase the loop runs with its gain, every
  gradient Adam receives (a ``torch.optim.Adam`` subclass that reads ``p.grad`` before stepping),
  the optimisers' lr and betas, and the final G, D, G_ema and Adam step counts.

Scenarios (each 8 px, 8 channels, z = w = 8, batch 8):
- ``full``: path length (weight 2) and R1 (gamma 1) on, batch_gpu 4 (two accumulation rounds),
  17 steps (Greg at 0, 4, 8, 12, 16; Dreg at 0, 16); gradients kept for steps 0, 1, 4 and 16.
- ``no_pl``: pl_weight 0 and gamma 0 (the alphaGAN paper's retraining has no path length; NVlabs'
  cifar config sets pl_weight 0 and keeps G's interval), one round, 5 steps: the loop still runs
  Greg and Dreg, which compute no gradient, and Adam keeps its lazy correction.
A rerun reproduces every value but the mapping networks' ``w_avg`` (NVlabs' module summary runs G in
training mode on ``torch.empty`` latents before training), which no gradient reads and the test skips.
This script is never imported by the package or the tests.
"""
import copy
import os
import pickle
import sys
import tempfile
import types
from pathlib import Path

import numpy as np
import torch

HERE = Path(__file__).resolve().parent
KEEP_GRADIENT_STEPS = {"full": {0, 1, 4, 16}, "no_pl": {0, 4}}
SCENARIOS = {
    "full": dict(batch=8, batch_gpu=4, steps=17, pl_weight=2.0, gamma=1.0, mbstd=2),
    "no_pl": dict(batch=8, batch_gpu=8, steps=5, pl_weight=0.0, gamma=0.0, mbstd=4),
}
COMMON = dict(resolution=8, z_dim=8, w_dim=8, channel_base=64, channel_max=8, lr=0.0025, betas=[0.0, 0.99],
              eps=1e-8, mixing=0.9, pl_decay=0.01, pl_batch_shrink=2, ema_kimg=0.05, G_reg_interval=4,
              D_reg_interval=16)


class Recorder:
    """What NVlabs' loop did, call by call; ``active`` only inside ``accumulate_gradients``."""

    def __init__(self):
        self.active, self.calls, self.steps, self.names, self.optimisers = False, [], [], {}, {}
        self.batch_idx, self.current = -1, None

    def draw(self, kind, value):
        if self.active:
            self.current[kind].append(value.detach().clone())
        return value


REC = Recorder()


class TorchWith:
    """``torch`` with some attributes replaced (the modules keep calling ``torch.x``)."""

    def __init__(self, **overrides):
        self.__dict__.update(overrides)

    def __getattr__(self, name):
        return getattr(torch, name)


def loss_where(*args, **kwargs):  # training/loss.py calls torch.where only for the mixing crossover
    return REC.draw("cutoff", torch.where(*args, **kwargs))


def loss_randn_like(like, *args, **kwargs):  # the mixing latents (2-D) and the path-length noise (4-D)
    value = torch.randn_like(like, *args, **kwargs)
    return REC.draw("z2" if value.ndim == 2 else "pl_noise", value)


def networks_randn(*args, **kwargs):  # training/networks.py draws only the noise inputs
    return REC.draw("noise", torch.randn(*args, **kwargs))


class CudaStandIn:
    class Event:
        def __init__(self, **kwargs):
            pass

        def record(self, *args):
            pass

        def synchronize(self):
            pass

        def elapsed_time(self, other):
            return 0.0

    current_stream = staticmethod(lambda *args: None)
    max_memory_allocated = staticmethod(lambda *args: 0)
    reset_peak_memory_stats = staticmethod(lambda *args: None)
    synchronize = staticmethod(lambda *args: None)


def import_nvlabs(checkout):
    sys.modules.setdefault("requests", types.ModuleType("requests"))
    psutil = types.ModuleType("psutil")
    psutil.Process = lambda pid: types.SimpleNamespace(memory_info=lambda: types.SimpleNamespace(rss=0))
    sys.modules.setdefault("psutil", psutil)
    sys.path.insert(0, str(checkout))
    from training import dataset, loss, networks, training_loop

    loss.torch = TorchWith(where=loss_where, randn_like=loss_randn_like)
    networks.torch = TorchWith(randn=networks_randn)
    training_loop.torch = TorchWith(device=lambda *args: torch.device("cpu"), cuda=CudaStandIn)
    return dataset, loss, networks, training_loop


def define_classes(dataset, loss):
    """The dataset, loss and optimiser classes the loop constructs by name (``__main__.X``)."""

    class ReferenceImages(dataset.Dataset):
        def __init__(self, images, **kwargs):
            self._images = images
            super().__init__(name="reference", raw_shape=images.shape, **kwargs)

        def _load_raw_image(self, raw_idx):
            return self._images[raw_idx]

        def _load_raw_labels(self):
            return None

    class RecordingLoss(loss.StyleGAN2Loss):
        def __init__(self, **kwargs):
            super().__init__(**kwargs)
            for prefix, module in (("G.mapping.", self.G_mapping), ("G.synthesis.", self.G_synthesis), ("D.", self.D)):
                for name, p in module.named_parameters():
                    REC.names[id(p)] = prefix + name
            REC.modules = {"G_mapping": self.G_mapping, "G_synthesis": self.G_synthesis, "D": self.D}

        def accumulate_gradients(self, phase, real_img, real_c, gen_z, gen_c, sync, gain):
            if phase == "Gmain" and (not REC.calls or REC.calls[-1]["phase"] != "Gmain"):
                REC.batch_idx += 1  # the first round of a step's first phase
            REC.current = {"step": REC.batch_idx, "phase": phase, "gain": gain, "z": gen_z.clone(),
                           "reals": real_img.clone(), "cutoff": [], "z2": [], "noise": [], "pl_noise": []}
            REC.active = True
            try:
                super().accumulate_gradients(phase, real_img, real_c, gen_z, gen_c, sync, gain)
            finally:
                REC.active = False
            REC.calls.append(REC.current)

    class RecordingAdam(torch.optim.Adam):
        def __init__(self, params, **kwargs):
            params = list(params)
            super().__init__(params, **kwargs)
            net = REC.names[id(params[0])][0]
            REC.optimisers[net] = {"opt": self, "lr": kwargs["lr"], "betas": list(kwargs["betas"])}

        def step(self, closure=None):
            params = self.param_groups[0]["params"]
            net = REC.names[id(params[0])][0]
            grads = {REC.names[id(p)]: (None if p.grad is None else p.grad.detach().clone()) for p in params}
            REC.steps.append({"step": REC.batch_idx, "phase": REC.calls[-1]["phase"], "net": net, "grads": grads})
            return super().step(closure)

    main = sys.modules["__main__"]
    main.ReferenceImages, main.RecordingLoss, main.RecordingAdam = ReferenceImages, RecordingLoss, RecordingAdam


def flat(tensors):
    """Tensors concatenated flat (their shapes follow from the networks: the test splits them)."""
    return torch.cat([t.flatten() for t in tensors]) if tensors else None


def perturbed_networks(networks, spec):
    """NVlabs' G and D at the tiny size, every parameter moved by N(0, 0.1^2) noise (seeded)."""
    torch.manual_seed(1234)
    kwargs = dict(channel_base=COMMON["channel_base"], channel_max=COMMON["channel_max"], num_fp16_res=0,
                  conv_clamp=None)
    G = networks.Generator(z_dim=COMMON["z_dim"], c_dim=0, w_dim=COMMON["w_dim"], img_resolution=COMMON["resolution"],
                           img_channels=3, mapping_kwargs=dict(num_layers=8), synthesis_kwargs=kwargs)
    D = networks.Discriminator(c_dim=0, img_resolution=COMMON["resolution"], img_channels=3,
                               epilogue_kwargs=dict(mbstd_group_size=spec["mbstd"]), **kwargs)
    with torch.no_grad():
        for p in list(G.parameters()) + list(D.parameters()):
            p.add_(torch.randn_like(p) * 0.1)
    return G, D


def run(checkout, name, spec, modules):
    dataset, loss, networks, training_loop = modules
    global REC
    REC = Recorder()
    G, D = perturbed_networks(networks, spec)
    initial = {name: {k: v.clone() for k, v in net.state_dict().items()} for name, net in (("G", G), ("D", D))}
    images = np.random.default_rng(7).integers(0, 256, size=[24, 3, 8, 8], dtype=np.uint8)
    with tempfile.TemporaryDirectory() as run_dir:
        resume = os.path.join(run_dir, "resume.pkl")
        with open(resume, "wb") as f:
            pickle.dump({"G": G, "D": D, "G_ema": copy.deepcopy(G)}, f)
        pin_memory, sampler_init = torch.Tensor.pin_memory, torch.utils.data.Sampler.__init__
        torch.Tensor.pin_memory = lambda self, *args, **kwargs: self  # no CUDA: nothing to pin
        # torch >= 2.2's Sampler takes no data source; NVlabs' InfiniteSampler passes one
        torch.utils.data.Sampler.__init__ = lambda self, data_source=None: None
        try:
            training_loop.training_loop(
                run_dir=run_dir,
                training_set_kwargs=dict(class_name="__main__.ReferenceImages", images=images),
                data_loader_kwargs=dict(num_workers=0),
                G_kwargs=dict(class_name="training.networks.Generator", z_dim=COMMON["z_dim"], w_dim=COMMON["w_dim"],
                              mapping_kwargs=dict(num_layers=8),
                              synthesis_kwargs=dict(channel_base=COMMON["channel_base"],
                                                    channel_max=COMMON["channel_max"], num_fp16_res=0,
                                                    conv_clamp=None)),
                D_kwargs=dict(class_name="training.networks.Discriminator", channel_base=COMMON["channel_base"],
                              channel_max=COMMON["channel_max"], num_fp16_res=0, conv_clamp=None,
                              epilogue_kwargs=dict(mbstd_group_size=spec["mbstd"])),
                G_opt_kwargs=dict(class_name="__main__.RecordingAdam", lr=COMMON["lr"], betas=COMMON["betas"],
                                  eps=COMMON["eps"]),
                D_opt_kwargs=dict(class_name="__main__.RecordingAdam", lr=COMMON["lr"], betas=COMMON["betas"],
                                  eps=COMMON["eps"]),
                loss_kwargs=dict(class_name="__main__.RecordingLoss", r1_gamma=spec["gamma"],
                                 pl_weight=spec["pl_weight"], style_mixing_prob=COMMON["mixing"],
                                 pl_decay=COMMON["pl_decay"], pl_batch_shrink=COMMON["pl_batch_shrink"]),
                random_seed=0, num_gpus=1, rank=0, batch_size=spec["batch"], batch_gpu=spec["batch_gpu"],
                ema_kimg=COMMON["ema_kimg"], ema_rampup=None, G_reg_interval=COMMON["G_reg_interval"],
                D_reg_interval=COMMON["D_reg_interval"], total_kimg=spec["steps"] * spec["batch"] / 1000,
                kimg_per_tick=1000, image_snapshot_ticks=None, network_snapshot_ticks=1000, resume_pkl=resume,
                cudnn_benchmark=False)
        finally:
            torch.Tensor.pin_memory, torch.utils.data.Sampler.__init__ = pin_memory, sampler_init
        snapshots = sorted(Path(run_dir).glob("network-snapshot-*.pkl"))
        with open(snapshots[-1], "rb") as f:
            final = pickle.load(f)  # written by the loop at its end
    steps = 1 + max(call["step"] for call in REC.calls)
    assert steps == spec["steps"], (steps, spec)
    calls = []  # one entry per accumulate_gradients call (round); each tensor list packed flat
    for call in REC.calls:
        assert len(call["cutoff"]) == len(call["z2"]) <= 1 and len(call["pl_noise"]) <= 1
        calls.append({"step": call["step"], "phase": call["phase"], "gain": call["gain"], "z": call["z"],
                      "reals": call["reals"] if call["phase"] == "Dmain" else None,  # every phase gets the same
                      "cutoff": int(call["cutoff"][0]) if call["cutoff"] else None,
                      "z2": call["z2"][0] if call["z2"] else None,
                      "noise": flat(call["noise"]), "pl_noise": call["pl_noise"][0] if call["pl_noise"] else None})
    updates = []
    for s in REC.steps:
        stepped = sorted(k for k, g in s["grads"].items() if g is not None)
        keep = s["step"] in KEEP_GRADIENT_STEPS[name]
        updates.append({"step": s["step"], "phase": s["phase"], "net": s["net"], "stepped": stepped,
                        "grads": flat([s["grads"][k] for k in stepped]) if keep else None})
    adam = {net: {"lr": o["lr"], "betas": o["betas"],
                  "steps": {REC.names[id(p)]: int(o["opt"].state[p]["step"]) if p in o["opt"].state else 0
                            for p in o["opt"].param_groups[0]["params"]}}
            for net, o in REC.optimisers.items()}
    return {"spec": {**COMMON, **spec}, "initial": initial, "calls": calls, "updates": updates, "adam": adam,
            "final": {key: {k: v.clone() for k, v in final[key].state_dict().items()} for key in ("G", "D", "G_ema")}}


def main():
    if len(sys.argv) != 2 or not (Path(sys.argv[1]) / "training" / "training_loop.py").is_file():
        sys.exit("usage: make_reference.py /path/to/stylegan2-ada-pytorch (a checkout)")
    torch.set_num_threads(1)
    modules = import_nvlabs(Path(sys.argv[1]).resolve())
    define_classes(modules[0], modules[1])
    reference = {name: run(sys.argv[1], name, spec, modules) for name, spec in SCENARIOS.items()}
    out = HERE / "reference.pt"
    torch.save(reference, out)
    print(f"wrote {out} ({out.stat().st_size / 1024:.0f} KiB)")


if __name__ == "__main__":
    main()
