"""Solvers, status codes, the solver registry, and the batched, sharded, multi-start `solve`."""

from ._lockstep import LockstepLBFGS as LockstepLBFGS
from ._minimise import minimise_batch as minimise_batch
from ._minimise import minimise_problem as minimise_problem
from ._minimise import objective_history as objective_history
from ._registry import ALIASES as ALIASES
from ._registry import SOLVERS as SOLVERS
from ._registry import canonical_solver_name as canonical_solver_name
from ._registry import default_solver as default_solver
from ._registry import make_solver as make_solver
from ._registry import solver_names as solver_names
from ._results import Status as Status
from ._solve import DEFAULT_SLOTS as DEFAULT_SLOTS
from ._solve import Solution as Solution
from ._solve import solve as solve
from ._solvers import LBFGS as LBFGS
from ._solvers import AbstractSolver as AbstractSolver
from ._solvers import Adam as Adam
from ._solvers import GradientDescent as GradientDescent
from ._solvers import ProjectedGradient as ProjectedGradient
from ._trajectory import Trajectory as Trajectory
