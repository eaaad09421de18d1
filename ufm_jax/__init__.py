"""ufm_jax: batched, certified solvers for unconstrained feature models (UFMs) of neural collapse.

The public API, in one list (implementation lives in private modules).
"""

from ._params import Params as Params
from ._params import end_to_end as end_to_end
from ._params import init_params as init_params
from ._problem import Problem as Problem
from ._problem import batch_size as batch_size
from ._problem import biased_mse as biased_mse
from ._problem import ce as ce
from ._problem import deep_linear_mse as deep_linear_mse
from ._problem import make_problem as make_problem
from ._problem import plain_mse as plain_mse
from ._problem import relu_ce as relu_ce
from ._problem import stack_problems as stack_problems
from .losses import ce_loss as ce_loss
from .losses import mse_loss as mse_loss
from .losses import objective as objective
from .solve import LBFGS as LBFGS
from .solve import LockstepLBFGS as LockstepLBFGS
from .solve import RESULTS as RESULTS
from .solve import STATUS_NAMES as STATUS_NAMES
from .solve import DEFAULT_SLOTS as DEFAULT_SLOTS
from .solve import AbstractSolver as AbstractSolver
from .solve import Adam as Adam
from .solve import GradientDescent as GradientDescent
from .solve import ProjectedGradient as ProjectedGradient
from .solve import Solution as Solution
from .solve import solve as solve
from .solve import status_name as status_name

from . import metrics as metrics
from . import theory as theory
from ._check import Check as Check
from ._check import check as check
from ._check import default_tolerances as default_tolerances
from ._check import report as report
from .theory import NoTheory as NoTheory
from .theory import TheorySolution as TheorySolution
from .theory import analytic_solution as analytic_solution

__version__ = "0.1.0"
