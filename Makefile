# Two commands are all a new user needs: `make demo` and `make test` (see README.md).
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
EXTRAS := dev,export

.PHONY: env demo demo-real ablation-real docs docs-ablation test test-fast test-real lint format paper bench bench-ablation bench-gpu lock clean-cache

# Create or update .venv with the exact locked set, and nothing else.
# The locked set (numpy 2.4, pandas 3.1, ipython 9, torch 2.14.1) needs Python 3.11 or newer.
env:
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null || { \
	  echo "make env: the locked set (constraints.txt) needs Python 3.11 or newer; $(PYTHON) is" \
	       "$$($(PYTHON) --version 2>&1 || echo missing). Install Python 3.11+ (python.org, pyenv, conda:" \
	       "conda env create -f environment.yml) and run: make env PYTHON=python3.11" >&2; exit 2; }
	@if [ -x $(PY) ] && ! $(PY) -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then \
	  echo "make env: $(VENV) was made with $$($(PY) --version); the locked set needs 3.11+: delete $(VENV)" \
	       "and run make env again (PYTHON=python3.11 if needed)" >&2; exit 2; fi
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -c constraints.txt -e ".[$(EXTRAS)]"
	# Register the kernel papermill/nbval ask for ("python3") with this venv's interpreter.
	$(PY) -m ipykernel install --sys-prefix --name python3 --display-name "Python 3 (resemote)" >/dev/null
	# Strip notebook outputs on commit (a no-op outside a git checkout).
	-git rev-parse --git-dir >/dev/null 2>&1 && $(VENV)/bin/nbstripout --install
	touch $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	$(MAKE) env

# Run the whole pipeline (notebooks 00, 01, 02, 04, then 03 for Table III) on the embedded synthetic faces into results/.
demo: $(STAMP)
	$(PY) -m resemote_lib pipeline params/demo.yaml

# ResEmoteNet trained on the real FER2013 on a CPU in about an hour (params/fer2013_cpu.yaml: the
# cpu_budget protocol) through the whole pipeline into results/fer2013_cpu/. The data is found as
# everywhere (data/fer2013, $$RESEMOTE_DATA, the Kaggle mount) or downloaded with Kaggle credentials;
# without either it stops at once, saying where to put the archive.
demo-real: $(STAMP)
	@echo "make demo-real: 15 epochs of lean ResEmoteNet on the real FER2013, in bf16 where the CPU has native bf16" \
	      "(AVX512_BF16/AMX), else fp32 (training prints which). Expected on 2 cores: about 55 minutes of training with" \
	      "AVX512_BF16, about 2 hours on an AVX2-only CPU (docs/cpu_training.md)"
	$(PY) -m resemote_lib pipeline params/fer2013_cpu.yaml

# The paper's thesis on real faces (params/ablation_fer2013_cpu.yaml through 05_ablation): ResEmoteNet
# against itself without SE, without residual blocks, and ResNet-18, each trained as make demo-real
# trains, 2 seeds, into results/ablation_fer2013_cpu_budget/; resumes where it stopped.
ablation-real: $(STAMP)
	@echo "make ablation-real: 10 runs of the make demo-real recipe on the real FER2013 (about 7 hours on 2 cores" \
	      "with AVX512_BF16). Stop it at any time: run it again to resume; finished runs are skipped"
	$(PY) -m resemote_lib pipeline params/ablation_fer2013_cpu.yaml

# Copy what README shows from the runs' own files into docs/: the demo's Table III and figures
# (after make demo) into docs/demo/, and the CPU-budget run's (after make demo-real) into
# docs/fer2013_cpu/ with its sweep (benchmarks/sweep_cpu.py). make demo and make demo-real alone
# never modify tracked files.
docs: $(STAMP)
	test -f results/paper/table3.md || { echo "make docs: run make demo or make demo-real first (no results/paper/table3.md)" >&2; exit 2; }
	if [ -f results/demo/metrics.json ]; then mkdir -p docs/demo && \
	  cp results/paper/table3.md results/paper/table3.csv results/paper/table3.png results/paper/fig3_demo.png docs/demo/ && \
	  cp results/demo/history.csv results/demo/metrics.json docs/demo/; fi
	if [ -f results/fer2013_cpu/metrics.json ]; then mkdir -p docs/fer2013_cpu && \
	  cp results/fer2013_cpu/metrics.json results/fer2013_cpu/history.csv results/paper/fig3_fer2013_cpu.png docs/fer2013_cpu/ && \
	  cd results/fer2013_cpu/figures && cp training_curves.png confusion_matrix.png reliability.png \
	    explore_confused_pairs.png explore_errors.png explore_cams.png explore_predictions.png ../../../docs/fer2013_cpu/ && cd - >/dev/null && \
	  $(PY) -c 'import pandas as pd; t = pd.read_csv("results/paper/table3.csv", keep_default_na=False); t[t["run"] == "fer2013_cpu"].to_csv("docs/fer2013_cpu/table3_row.csv", index=False); open("docs/fer2013_cpu/table3_row.md", "w").write(t[t["run"] == "fer2013_cpu"].T.to_markdown(headers=["Table III row", "fer2013_cpu"]) + "\n")'; fi
	if [ -f results/sweep_cpu/sweep.md ]; then mkdir -p docs/fer2013_cpu && cp results/sweep_cpu/sweep.md results/sweep_cpu/sweep.csv docs/fer2013_cpu/; fi

# Copy an ablation's tables and figures (results/$(RUN)/, as 05_ablation wrote them) into docs/$(RUN)/,
# with the ablation's resolved params and, when measured, its quiet speed table (make bench-ablation).
docs-ablation:
	test -n "$(RUN)" -a -f results/$(RUN)/ablation.md || { echo "make docs-ablation RUN=<run>: no results/$(RUN)/ablation.md" >&2; exit 2; }
	mkdir -p docs/$(RUN)
	cp results/$(RUN)/ablation.md results/$(RUN)/ablation.csv results/$(RUN)/ablation_summary.csv results/$(RUN)/gradient_flow.csv results/$(RUN)/figures/ablation.png results/$(RUN)/figures/gradient_flow.png docs/$(RUN)/
	for f in paired.csv contrasts.csv recall.csv figures/ablation_accuracy.png figures/ablation_recall.png params.yaml; do \
	  test ! -f results/$(RUN)/$$f || cp results/$(RUN)/$$f docs/$(RUN)/; done
	test ! -f results/bench/ablation_speed.md || cp results/bench/ablation_speed.md results/bench/ablation_speed.csv docs/$(RUN)/

# The whole suite: unit tests, slow tests and every notebook under nbval.
test: $(STAMP)
	$(PY) -m pytest

test-fast: $(STAMP)
	$(PY) -m pytest -m "not slow"

# Only the real-data tests: validates your own download (data/fer2013, or $$RESEMOTE_DATA); fails if absent.
test-real: $(STAMP)
	RESEMOTE_REQUIRE_REALDATA=1 $(PY) -m pytest -m realdata

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/nbstripout --verify notebooks/*.ipynb

format: $(STAMP)
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/nbstripout notebooks/*.ipynb

# Every real experiment whose data is present (the others are skipped, and said so).
paper: $(STAMP)
	$(PY) -m resemote_lib pipeline --if-data-present params/fer2013*.yaml params/rafdb*.yaml params/affectnet*.yaml

bench: $(STAMP)
	$(PY) benchmarks/run.py

# Training and inference speed of each ablation variant under the CPU-budget recipe, measured alone
# (a few steps each, interleaved) into results/bench/ablation_speed.{md,csv}: the ablation's own
# runs share the machine with whatever else runs, so their img/s column is not a benchmark.
bench-ablation: $(STAMP)
	$(PY) benchmarks/ablation_speed.py

# The paper's FER2013 run timed on one GPU in under 10 minutes (benchmarks/gpu.py): make bench-gpu
# DATA=<folder holding fer2013.zip or Kaggle's train/ and test/> [OUT=results/bench/gpu]. Needs only
# torch, numpy, pandas, pillow, pyyaml and scikit-learn: no make env (.venv's python when there is
# one, else $(PYTHON)). SMOKE=1 make bench-gpu: the same on the CPU at tiny sizes (synthetic faces
# without DATA).
BENCH_PY := $(if $(wildcard $(PY)),$(PY),$(PYTHON))
bench-gpu:
	PYTHONPATH=. $(BENCH_PY) benchmarks/gpu.py $(if $(DATA),--data "$(DATA)") --out "$(or $(OUT),results/bench/gpu)"

# Re-resolve the locked set from pyproject's ranges (needs the package index).
lock:
	rm -rf /tmp/resemote-lock && $(PYTHON) -m venv /tmp/resemote-lock
	/tmp/resemote-lock/bin/pip install --quiet "torch==2.14.1" "torchvision==0.29.1" -e ".[$(EXTRAS)]"
	{ echo "# Exact, tested set for Python 3.11 on Linux x86-64 (make env applies it with pip -c)."; \
	  echo "# Regenerate: make lock. pyproject.toml keeps compatible ranges for other platforms."; \
	  /tmp/resemote-lock/bin/pip freeze --exclude-editable; } > constraints.txt

clean-cache:
	rm -rf .cache
