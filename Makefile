# `make test` and `make demo` are all the set-up a fresh machine needs: each creates .venv
# and installs StyleNAS into it on first use.
PYTHON ?= python3
VENV ?= .venv
# The torch build this machine installs fastest; override e.g. TORCH_SPEC="torch torchvision".
TORCH_SPEC ?= torch==2.14.1 torchvision==0.29.1
PY := $(VENV)/bin/python
STAMP := $(VENV)/.stylenas-installed

.PHONY: test demo venv clean gpu-check

venv: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip setuptools wheel
	$(PY) -m pip install -q $(TORCH_SPEC)
	$(PY) -m pip install -q --no-build-isolation -e '.[test]'
	touch $(STAMP)

# pytest exits with 5 when it collects no tests: that is a failure, not a pass.
test: $(STAMP)
	$(PY) -m pytest -q --durations=30 tests; rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "make test: pytest collected no tests" >&2; exit 1; fi; exit $$rc

# The whole pipeline on demo data, on the CPU in a few minutes. Each step is a command a
# user would type: data -> search -> retrain -> samples -> FID, then the conventional GANs.
DEMO_OUT ?= demo-out
demo: $(STAMP)
	@echo "== custom ops: reference timings (kernels too on a GPU) =="
	$(PY) scripts/bench_ops.py --quick --repeats 3 --out $(DEMO_OUT)/bench_ops.json > /dev/null
	@echo "== custom ops: the CUDA kernels against their references (host emulation without a GPU) =="
	$(PY) -m stylenas.ops check --auto
	@echo "== data: 2000 procedural demo images at 32 and 64 px =="
	$(PY) scripts/make_demo_data.py --out $(DEMO_OUT)/demo.lmdb --size 32 --size 64 --num 2000 --force
	@echo "== search: alphaGAN, micro + dynamic W, tiny preset at 32 px =="
	rm -rf $(DEMO_OUT)/search
	$(PY) scripts/search_stylegan2.py --data $(DEMO_OUT)/demo.lmdb --outdir $(DEMO_OUT)/search \
		--resolution 32 --preset tiny --iters 120 --sample-every 40
	@echo "== metrics: exact Frechet distance on 512-d statistics, vs pytorch-fid's sqrtm route =="
	$(PY) scripts/bench_fid.py --dims 512 --samples 1024 --batch 4 --repeats 1 --few-samples 0 \
		--out $(DEMO_OUT)/bench_fid.json > /dev/null
	@echo "== metrics: FID reference statistics of the demo data at 32 px, the retraining's size (needs the Inception weights) =="
	@if $(PY) -c "from stylenas.metrics.inception import find_weights; find_weights(download=False)" 2>/dev/null; then \
		$(PY) scripts/fid.py $(DEMO_OUT)/demo.lmdb --resolution 32 --num 500 --workers 0 --save-stats $(DEMO_OUT)/demo-stats.npz; \
	else \
		echo "skipped: pt_inception-2015-12-05-6726825d.pth is not on this machine (see README, Metrics)"; \
	fi
	@echo "== retrain: the searched genotype with StyleGAN2's recipe, tiny cfg at 32 px (1 kimg) =="
	rm -rf $(DEMO_OUT)/train $(DEMO_OUT)/generated
	# one thread: tiny networks run ~10x faster on a shared CPU than with a thread per core
	OMP_NUM_THREADS=1 $(PY) scripts/train_stylegan2.py --data $(DEMO_OUT)/demo.lmdb \
		--genotype $(DEMO_OUT)/search/genotype.json --outdir $(DEMO_OUT)/train --cfg tiny --kimg 1 --snap 0.25 --workers 0
	@echo "== generate: a grid of 32 seeds from the retrained G_ema (and a truncated one) =="
	$(PY) scripts/generate.py --ckpt $(DEMO_OUT)/train/checkpoint.pt --seeds 0-31 --grid --outdir $(DEMO_OUT)/generated
	$(PY) scripts/generate.py --ckpt $(DEMO_OUT)/train/checkpoint.pt --seeds 0-31 --trunc 0.7 --outdir $(DEMO_OUT)/generated/trunc0.7
	@echo "== metrics: FID of the retrained checkpoint against the demo data (500 images) =="
	@if [ -f $(DEMO_OUT)/demo-stats.npz ]; then \
		$(PY) scripts/fid.py $(DEMO_OUT)/train/checkpoint.pt $(DEMO_OUT)/demo-stats.npz --num 500 --device cpu; \
	else \
		echo "skipped: no Inception weights (see above); the samples are in $(DEMO_OUT)/generated/grid.png"; \
	fi
	@echo "== conventional GANs: alphaGAN on AutoGAN cells and DEGAS (tiny) at 32 px, then retraining a genotype =="
	rm -rf $(DEMO_OUT)/conv-alphagan $(DEMO_OUT)/conv-degas $(DEMO_OUT)/conv-train
	$(PY) scripts/search_conventional.py --method alphagan --data $(DEMO_OUT)/demo.lmdb --resolution 32 \
		--outdir $(DEMO_OUT)/conv-alphagan --preset tiny --iters 8 --sample-every 4
	$(PY) scripts/search_conventional.py --method degas --data $(DEMO_OUT)/demo.lmdb --resolution 32 \
		--outdir $(DEMO_OUT)/conv-degas --preset tiny --iters 4 --sample-every 2
	$(PY) scripts/train_conventional.py --genotype $(DEMO_OUT)/conv-alphagan/genotype.json \
		--data $(DEMO_OUT)/demo.lmdb --resolution 32 --outdir $(DEMO_OUT)/conv-train --preset tiny --steps 20
	@echo "== conventional GANs: a tiny AutoGAN search (3 iterations, one per cell; proxy-scored) =="
	rm -rf $(DEMO_OUT)/conv-autogan
	$(PY) scripts/search_conventional.py --method autogan --data $(DEMO_OUT)/demo.lmdb --resolution 32 \
		--outdir $(DEMO_OUT)/conv-autogan --preset tiny --proxy
	@echo "== conventional GANs: one DGGAN growing step from 8 px (every action on the base: G conv, D conv, 16 px fade-in), proxy-scored =="
	rm -rf $(DEMO_OUT)/conv-dggan
	$(PY) scripts/search_conventional.py --method dggan --data $(DEMO_OUT)/demo.lmdb --resolution 32 \
		--outdir $(DEMO_OUT)/conv-dggan --preset tiny --proxy --p 1 --top-k 1 --max-steps 1
	@echo "== compare: alphaGAN vs random search in its space vs the original StyleGAN2, same budget, one retraining and evaluation (tiny, 2 seeds) =="
	rm -rf $(DEMO_OUT)/compare
	@# it prints leaderboard.md at the end; without the weights file, on labelled PROXY features (--proxy)
	@if $(PY) -c "from stylenas.metrics.inception import find_weights; find_weights(download=False)" 2>/dev/null; then \
		features=""; \
	else \
		echo "pt_inception-2015-12-05-6726825d.pth is not on this machine (see README, Metrics): scoring on PROXY features (a seeded random-weight Inception; not FID)"; \
		features="--proxy"; \
	fi; \
	set -x; OMP_NUM_THREADS=1 $(PY) scripts/compare.py --data $(DEMO_OUT)/demo.lmdb --resolution 32 --outdir $(DEMO_OUT)/compare \
		--family stylegan2 --methods alphagan,random --seeds 0,1 --budget tiny --device cpu $$features

# On a machine with one GPU, in a few minutes: CUDA tests, kernel self-checks, the benchmarks, 20 alphaGAN
# iterations and 0.5 kimg of retraining at 256 px; one JSON + a snippet for docs/benchmarks.md.
# NVLABS=/path/to/stylegan2-ada-pytorch also times NVlabs' code.
GPU_CHECK_OUT ?= gpu-check
gpu-check: $(STAMP)
	$(PY) scripts/gpu_check.py --out $(GPU_CHECK_OUT) $(if $(NVLABS),--nvlabs $(NVLABS))

clean:
	rm -rf $(DEMO_OUT) build dist *.egg-info
