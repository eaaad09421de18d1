"""Sweeps over grids of UFM problems: config, grid, resumable runner, dataset, figures, thresholds.

Modules, each importing only those before it: `_files` (atomic writes, the checksum manifest),
`_config`, `_grid`, `_dataset`, `_plots`, `_store` (the results folder: lock, fingerprint), `_processes`
(several processes under `jax.distributed`), `_chunks` (one chunk's solve, records and file), `_plan`
(the plan and its pre-flight checks), `_runner`, `_threshold`.
The `ufm sweep`, `ufm plot` and `ufm threshold` commands are in `ufm_jax.cli` (importing this package
lazily: start-up time).
"""

from ._chunks import solve_chunk as solve_chunk
from ._chunks import solve_points as solve_points
from ._config import SweepConfig as SweepConfig
from ._config import SweepConfigError as SweepConfigError
from ._config import load_config as load_config
from ._config import validate as validate_config
from ._dataset import build_dataset as build_dataset
from ._dataset import load_dataset as load_dataset
from ._dataset import report as report
from ._dataset import save_dataset as save_dataset
from ._dataset import to_csv as to_csv
from ._dataset import to_dataframe as to_dataframe
from ._files import DamagedFileError as DamagedFileError
from ._files import Manifest as Manifest
from ._files import atomic_path as atomic_path
from ._files import atomic_write as atomic_write
from ._grid import Batch as Batch
from ._grid import Grid as Grid
from ._grid import Group as Group
from ._grid import Point as Point
from ._grid import groups as groups
from ._grid import make_point as make_point
from ._plan import Plan as Plan
from ._plan import dry_run as dry_run
from ._plan import plan as plan
from ._plots import plot_dataset as plot_dataset
from ._runner import SweepResult as SweepResult
from ._runner import run_sweep as run_sweep
from ._store import SweepRunError as SweepRunError
from ._store import fingerprint as fingerprint
from ._threshold import ThresholdResult as ThresholdResult
from ._threshold import find_threshold as find_threshold
from ._threshold import theory_threshold as theory_threshold
