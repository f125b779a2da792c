"""Measuring the budget unit of a search that is not ours to instrument: images through G or D.

``count_images()`` is a context manager yielding a counter; while it is open, global module hooks
look at every *outermost* module call (a call made while no other module is running, such as
``G(z)`` or ``D(x)`` in a training loop, not the convolutions inside them) and count
- a generator call: its output is an image batch [n, 3, H, W] -> n images through G;
- a discriminator call: its first input is an image batch [n, 3, H, W] and its output is not one,
  and it is not the FID Inception (rewards and metrics are not the search's G or D) -> n through D.
A generated image judged by D therefore counts twice, a real image once, which is the unit of
``stylenas.compare.budgets``. Other outermost calls (an RNN controller, the Inception network) count
nothing. Data-loader workers run no G or D, so counting in the main process is complete.
"""
import contextlib
import threading

import torch


def _is_images(x):
    return isinstance(x, torch.Tensor) and x.dim() == 4 and x.shape[1] == 3


class ImageCounter:
    def __init__(self):
        self.generator = 0
        self.discriminator = 0

    @property
    def kimg(self):
        return (self.generator + self.discriminator) / 1000


@contextlib.contextmanager
def count_images():
    from ..metrics import InceptionV3FID

    counter, state = ImageCounter(), threading.local()

    def pre_hook(module, inputs):
        state.depth = getattr(state, "depth", 0) + 1
        if state.depth == 1:
            state.first_input = inputs[0] if inputs else None

    def hook(module, inputs, output):
        state.depth = getattr(state, "depth", 1) - 1
        if state.depth or isinstance(module, InceptionV3FID):
            return
        if _is_images(output):
            counter.generator += len(output)
        elif _is_images(getattr(state, "first_input", None)):
            counter.discriminator += len(state.first_input)

    handles = [torch.nn.modules.module.register_module_forward_pre_hook(pre_hook),
               torch.nn.modules.module.register_module_forward_hook(hook, always_call=True)]
    try:
        yield counter
    finally:
        for handle in handles:
            handle.remove()
