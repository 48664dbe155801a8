"""Where flowutils finds the files that do not ship inside the package: its *home* folder.

The manifests are package data (``flowutils/manifests/``, read through :mod:`importlib.resources`,
:mod:`.manifests`). The shipped toy checkpoints (``models/``), the GPU benchmark results
(``benchmarks/results/``) and the notebooks' relative paths (``data/``, ``results/``) belong to the
project's repository instead; they are looked for under :func:`home`:

* ``$FLOWUTILS_HOME``, when set: a checkout of the project, or any folder with the same layout;
* else the checkout this package is imported from (``flowutils/`` next to a ``pyproject.toml``).

An installed flowutils (``pip install .``) used from elsewhere therefore needs ``FLOWUTILS_HOME``;
the errors here name it.
"""

from __future__ import annotations

import os
from importlib import resources
from pathlib import Path

HOME_ENV = "FLOWUTILS_HOME"


class HomeNotFoundError(FileNotFoundError):
    """``FLOWUTILS_HOME`` is not set and flowutils is not imported from a checkout."""


def home() -> Path:
    """The flowutils home folder: ``$FLOWUTILS_HOME``, else the checkout flowutils runs from."""
    setting = os.environ.get(HOME_ENV)
    if setting:
        return Path(setting).expanduser().resolve()
    # the package's location only tells a checkout (pyproject.toml beside flowutils/) from an installed copy
    package = Path(str(resources.files("flowutils")))
    if (package.parent / "pyproject.toml").is_file():
        return package.parent
    raise HomeNotFoundError(f"{HOME_ENV} is not set and flowutils ({package}) is not imported from a checkout of "
                            f"the project: set {HOME_ENV} to the folder holding models/ and benchmarks/results/ "
                            f"(a checkout of the project)")


def home_path(*parts: str) -> Path:
    """``home() / parts``, which must exist; the error names the setting and where it points."""
    root = home()
    path = root.joinpath(*parts)
    if not path.exists():
        where = f"{HOME_ENV}={os.environ[HOME_ENV]}" if os.environ.get(HOME_ENV) else f"{HOME_ENV} unset: the checkout {root}"
        raise FileNotFoundError(f"{path} does not exist ({where}); set {HOME_ENV} to a folder holding {Path(*parts)}")
    return path


def write_atomic(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file beside it and a rename: a reader sees the old file or the
    new one, never half of one."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)
