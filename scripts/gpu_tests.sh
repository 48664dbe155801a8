#!/usr/bin/env bash
# The tests that need a GPU, and the model-family and layout tests, on a GPU machine's own Python: there,
# transformers 5.17 and torch 2.11, the lower bound of pyproject.toml's ranges. Run from the repository root.
# An offline machine that lacks num2words (SmolVLM2's processor): download its wheel beside the repository
# (`pip download --no-deps -d .whl num2words`) and it is installed from there.
set -euo pipefail
if ls .whl/*.whl >/dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --target /tmp/site .whl/*.whl
  export PYTHONPATH=/tmp/site
fi
export PYTHONPATH="${PYTHONPATH:+$PYTHONPATH:}$PWD"
python3 -c "import torch, transformers; print('transformers', transformers.__version__, 'torch', torch.__version__, \
'device', torch.cuda.get_device_name() if torch.cuda.is_available() else 'none')"
python3 -m pytest -q -p no:cacheprovider tests/test_families.py tests/test_layout.py
python3 -m pytest -q -p no:cacheprovider -rs tests/test_engine.py -k "cuda or queue"
