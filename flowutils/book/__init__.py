"""Layer 8, ``book``: what the Jupyter Book's pages need beyond the measurements.

Notebook parameters and their validation (:mod:`.parameters`), one function per figure or
table (:mod:`.figures`), the widget-driven exploration (:mod:`.explore`), the Reproduction
status page (:mod:`.status`) and the "Rerun on a real model" page (:mod:`.rerun`).
May import ``paper`` and the layers below it; only :mod:`flowutils.cli` stands above.
"""
