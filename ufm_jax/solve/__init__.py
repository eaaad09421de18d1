"""Solvers, status codes, and the batched, sharded, multi-start `solve`."""

from ._minimise import TRACE_COUNT as TRACE_COUNT
from ._minimise import minimise_batch as minimise_batch
from ._minimise import minimise_problem as minimise_problem
from ._minimise import objective_history as objective_history
from ._results import RESULTS as RESULTS
from ._results import STATUS_NAMES as STATUS_NAMES
from ._results import status_name as status_name
from ._solve import DEFAULT_SLOTS as DEFAULT_SLOTS
from ._solve import Solution as Solution
from ._solve import default_solver as default_solver
from ._solve import solve as solve
from ._lockstep import LockstepLBFGS as LockstepLBFGS
from ._solvers import LBFGS as LBFGS
from ._solvers import AbstractSolver as AbstractSolver
from ._solvers import Adam as Adam
from ._solvers import GradientDescent as GradientDescent
from ._solvers import ProjectedGradient as ProjectedGradient
