# Map the Flow book. `make book` builds everything; `make test` is what CI runs.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
KERNEL := flowutils
# the pages in three phases: quick ones first, then two chains side by side (one per core; a page that reads another's
# sweep from the result store runs after it in the same chain, and no two pages write the same result set), then
# the status page, which reads every page's saved claims
FIRST    := data performance real_models supported_models
CHAIN_A  := temporal_interaction effective_pathways appendix_open_ended appendix_multi_token
CHAIN_B  := video_language_integration answer_generation toy_models explore appendix_lens_attention \
            appendix_long_videos appendix_failure_cases appendix_robustness
LAST     := reproduction_status
SECTIONS := $(FIRST) $(CHAIN_A) $(CHAIN_B) $(LAST)
NB     ?= data
PARAMS ?=
PYTEST_NBVAL := -n 2 --dist loadfile --nbval-lax --nbval-kernel-name $(KERNEL) --nbval-sanitize-with book/nbval_sanitize.cfg

LOCK   := requirements.lock
LATEST := .venv-latest

.PHONY: venv lock data notebooks chain chain-a chain-b section book test test-latest browser-deps toy-models benchmark clean

# the venv installs exactly what the lock pins (hash-checked), then the package itself
venv: $(STAMP)
$(STAMP): pyproject.toml $(LOCK)
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --require-hashes -r $(LOCK)
	$(BIN)/python -m pip install -q --no-deps -e .
	$(BIN)/python -m ipykernel install --sys-prefix --name $(KERNEL) --display-name "Python (flowutils)"
	touch $@

# refresh the lock from pyproject.toml's ranges: one universal resolution (Python >= 3.10, markers where
# versions differ), with hashes; torch and torchvision held by lock-pins.txt (tests/test_lock.py checks the two agree)
lock: venv
	$(BIN)/uv pip compile pyproject.toml --extra dev --universal --python-version 3.10 --generate-hashes \
	  --constraints lock-pins.txt --no-header --quiet --output-file $(LOCK)

# the synthetic benchmark the notebooks read (the notebooks also create it when missing)
data: venv
	$(BIN)/python -m flowutils data --root data --n-per-task 48 --seed 0 --split test

# run one section: make section NB=data PARAMS="-p n_per_task 8" (one thread, as nbval reruns them: the same
# numbers, and no threads spinning on a busy 2-core machine: a page took 322 s instead of 31 s)
section: venv
	OMP_NUM_THREADS=1 TQDM_DISABLE=1 HF_HUB_DISABLE_PROGRESS_BARS=1 $(BIN)/papermill --no-progress-bar -k $(KERNEL) --cwd book notebooks/$(NB).ipynb book/$(NB).ipynb $(PARAMS)

notebooks: venv
	$(MAKE) --no-print-directory chain PAGES="$(FIRST)"
	$(MAKE) --no-print-directory -j2 chain-a chain-b
	$(MAKE) --no-print-directory chain PAGES="$(LAST)"

chain-a:
	$(MAKE) --no-print-directory chain PAGES="$(CHAIN_A)"
chain-b:
	$(MAKE) --no-print-directory chain PAGES="$(CHAIN_B)"
chain:
	for nb in $(PAGES); do $(MAKE) --no-print-directory section NB=$$nb || exit 1; done

book: venv data notebooks
	$(BIN)/jupyter-book build book --config _config.yml --path-output . -W -n --keep-going

# the browser test (tests/test_browser.py) drives Debian's Chromium through Playwright; CHROMIUM=path overrides
browser-deps:
	@[ -n "$$CHROMIUM" ] || command -v chromium >/dev/null || \
	  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; }

# two pytest workers (pytest-xdist; a notebook's cells stay on one worker), one thread each: two processes of
# two threads each on 2 cores spend most of their time spinning (14 min against 11 serial; 4.8 min like this)
TEST_ENV := OMP_NUM_THREADS=1 TQDM_DISABLE=1 HF_HUB_DISABLE_PROGRESS_BARS=1

# includes the browser test: it builds the book into _build/html (BOOK_HTML=dir reuses a built one) and
# writes screenshots of every page to _build/screenshots/
test: venv browser-deps
	$(BIN)/lint-imports
	$(TEST_ENV) $(BIN)/python -m pytest -q $(PYTEST_NBVAL) tests $(addprefix book/,$(addsuffix .ipynb,$(SECTIONS)))

# compatibility: a second venv from pyproject.toml alone, every dependency at its newest release (what a reader
# who installs today gets; the lock keeps main green meanwhile), and the package's tests in it (not the browser
# test nor the notebooks, whose committed outputs were made with the lock's versions)
test-latest:
	rm -rf $(LATEST)
	$(PYTHON) -m venv $(LATEST)
	$(LATEST)/bin/python -m pip install -q --upgrade --upgrade-strategy eager -e ".[dev]"
	@echo "newest versions resolved:"; $(LATEST)/bin/python -m pip list --format=freeze | \
	  grep -iE '^(torch|torchvision|transformers|tokenizers|huggingface.hub|accelerate|numpy|pandas|safetensors)=='
	$(TEST_ENV) $(LATEST)/bin/python -m pytest -q -n 2 --dist loadfile tests --ignore tests/test_browser.py

# GPU: train the toy Image/Video LLMs from scratch into models/ (the shipped recipe; ~20 min on an H200)
TOY := $(BIN)/python scripts/train_toy_models.py
toy-models: venv
	$(TOY) data
	$(TOY) text
	$(TOY) vision
	$(TOY) image --init models/cache/toy-vision --text-steps 0 --text-context scene --freeze-vision
	$(TOY) video
	$(TOY) evaluate --model models/toy-imagellm
	$(TOY) evaluate --model models/toy-videollm
	$(TOY) manifest

# GPU: the knockout engine benchmark (results in benchmarks/results/)
benchmark: venv
	$(BIN)/python benchmarks/knockout_sweep.py

clean:
	rm -rf _build
