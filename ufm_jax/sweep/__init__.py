"""Sweeps over grids of UFM problems: config, grid, resumable runner, dataset, figures, thresholds."""

from ._config import SweepConfig as SweepConfig
from ._config import SweepConfigError as SweepConfigError
from ._config import load_config as load_config
from ._config import validate as validate_config
from ._dataset import build_dataset as build_dataset
from ._dataset import load_dataset as load_dataset
from ._dataset import report as report
from ._dataset import save_dataset as save_dataset
from ._dataset import to_csv as to_csv
from ._grid import Group as Group
from ._grid import Point as Point
from ._grid import expand as expand
from ._grid import groups as groups
from ._plots import boundaries as boundaries
from ._plots import plot_dataset as plot_dataset
from ._runner import SweepResult as SweepResult
from ._runner import atomic_write as atomic_write
from ._runner import plan as plan
from ._runner import run_sweep as run_sweep
from ._runner import solve_points as solve_points
from ._threshold import ThresholdResult as ThresholdResult
from ._threshold import find_threshold as find_threshold
