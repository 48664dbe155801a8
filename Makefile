# Map the Flow book. `make book` builds everything; `make test` is what CI runs.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
KERNEL := flowutils
SECTIONS := data performance temporal_interaction video_language_integration answer_generation effective_pathways explore real_models supported_models toy_models reproduction_status
NB     ?= data
PARAMS ?=
PYTEST_NBVAL := --nbval-lax --nbval-kernel-name $(KERNEL) --nbval-sanitize-with book/nbval_sanitize.cfg

.PHONY: venv data notebooks section book test browser-deps toy-models benchmark clean

venv: $(STAMP)
$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e ".[dev]"
	$(BIN)/python -m ipykernel install --sys-prefix --name $(KERNEL) --display-name "Python (flowutils)"
	touch $@

# the synthetic benchmark the notebooks read (the notebooks also create it when missing)
data: venv
	$(BIN)/python -m flowutils data --root data --n-per-task 24 --seed 0 --split test

# run one section: make section NB=data PARAMS="-p n_per_task 8"
section: venv
	TQDM_DISABLE=1 HF_HUB_DISABLE_PROGRESS_BARS=1 $(BIN)/papermill --no-progress-bar -k $(KERNEL) --cwd book notebooks/$(NB).ipynb book/$(NB).ipynb $(PARAMS)

notebooks: venv
	for nb in $(SECTIONS); do $(MAKE) --no-print-directory section NB=$$nb || exit 1; done

book: venv data notebooks
	$(BIN)/jupyter-book build book --config _config.yml --path-output . -W -n --keep-going

# the browser test (tests/test_browser.py) drives Debian's Chromium through Playwright; CHROMIUM=path overrides
browser-deps:
	@[ -n "$$CHROMIUM" ] || command -v chromium >/dev/null || \
	  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; }

# includes the browser test: it builds the book into _build/html (BOOK_HTML=dir reuses a built one) and
# writes screenshots of every page to _build/screenshots/
test: venv browser-deps
	$(BIN)/lint-imports
	TQDM_DISABLE=1 HF_HUB_DISABLE_PROGRESS_BARS=1 $(BIN)/python -m pytest -q $(PYTEST_NBVAL) tests $(addprefix book/,$(addsuffix .ipynb,$(SECTIONS)))

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
