"""The conventional searchers, one module per method: ``autogan`` (REINFORCE over a shared GAN),
``agan`` (REINFORCE, every child trained), ``alphagan`` and ``degas`` (differentiable, driven by
``differentiable``) and ``dggan`` (top-K greedy growing; its candidates, run state and reports in
``dggan_candidates``, ``dggan_run``, ``dggan_reports``). Each reads its network family from
``conventional.spaces``; ``common`` holds what they share."""
