"""Studies: a grid of config keys × seeds (and named variants) as resumable training runs.

``contrastkit sweep SWEEP`` loads a sweep file (:mod:`contrastkit.sweep.spec`), runs each grid
point and seed as an ordinary run directory (:mod:`contrastkit.sweep.runner`), reduces them to
mean ± std per grid point (:mod:`contrastkit.sweep.aggregate`) and writes
``study_NAME.md/.json/.png`` (:mod:`contrastkit.sweep.report`). The shipped sweeps are in
``contrastkit/sweeps/``; see docs/studies.md.
"""

from contrastkit.sweep.spec import Sweep, list_sweeps, load_sweep

__all__ = ["Sweep", "list_sweeps", "load_sweep"]
