"""ufm_jax: batched, certified solvers for unconstrained feature models (UFMs) of neural collapse.

The public API, in one list (implementation lives in private modules).
"""

from . import metrics as metrics
from . import theory as theory
from ._cache import disable_compilation_cache as disable_compilation_cache
from ._cache import enable_compilation_cache as enable_compilation_cache
from ._check import Check as Check
from ._check import Evidence as Evidence
from ._check import check as check
from ._check import default_tolerances as default_tolerances
from ._check import report as report
from ._families import FAMILIES as FAMILIES
from ._families import Family as Family
from ._families import analytic_solution as analytic_solution
from ._families import family_of as family_of
from ._families import phase_boundaries as phase_boundaries
from ._families import presets as _presets
from ._params import Params as Params
from ._params import end_to_end as end_to_end
from ._params import init_params as init_params
from ._problem import Problem as Problem
from ._problem import batch_size as batch_size
from ._problem import make_problem as make_problem
from ._problem import pad_columns as pad_columns
from ._problem import stack_problems as stack_problems
from ._search import search as search
from .losses import ce_loss as ce_loss
from .losses import mse_loss as mse_loss
from .losses import objective as objective
from .solve import DEFAULT_SLOTS as DEFAULT_SLOTS
from .solve import LBFGS as LBFGS
from .solve import SOLVERS as SOLVERS
from .solve import AbstractSolver as AbstractSolver
from .solve import Adam as Adam
from .solve import GradientDescent as GradientDescent
from .solve import LockstepLBFGS as LockstepLBFGS
from .solve import ProjectedGradient as ProjectedGradient
from .solve import Solution as Solution
from .solve import Status as Status
from .solve import Trajectory as Trajectory
from .solve import make_solver as make_solver
from .solve import objective_history as objective_history
from .solve import solve as solve
from .theory import NoTheory as NoTheory
from .theory import TheoremNotApplicable as TheoremNotApplicable
from .theory import TheorySolution as TheorySolution

# The papers' variants as constructors, one per preset of the family registry (`FAMILIES`).
_PRESETS = _presets()
ce = _PRESETS["ce"]
mse = _PRESETS["mse"]
plain_mse = _PRESETS["plain_mse"]
deep_linear_mse = _PRESETS["deep_linear_mse"]
biased_mse = _PRESETS["biased_mse"]
relu_ce = _PRESETS["relu_ce"]
relu_mse = _PRESETS["relu_mse"]

__version__ = "0.1.0"
