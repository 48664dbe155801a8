"""nbval checks the executed pages here with one unit of rounding allowed in printed numbers (nbval_rounding.py)."""

import nbval_rounding

nbval_rounding.install()
