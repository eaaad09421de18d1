"""`ufm sweep` as one process of a multi-process run, for tests/test_integrity.py.

    python tests/launch_sweep.py [--exit-before-chunk N] UFM-SWEEP-ARGUMENTS...

With `--exit-before-chunk N` this process ends abruptly (`os._exit`, no cleanup, as if killed) when it
is about to solve its N-th chunk (1-based), after finishing and (process 0) writing the ones before. The
package has no hook for this: the launcher wraps the runner's `solve_chunk`.
"""

import os
import sys

args = sys.argv[1:]
exit_before = None
if args[:1] == ["--exit-before-chunk"]:
    exit_before, args = int(args[1]), args[2:]

from ufm_jax.cli import main  # noqa: E402
from ufm_jax.sweep import _runner  # noqa: E402

if exit_before is not None:
    original, calls = _runner.solve_chunk, []

    def solve_chunk(*a, **kw):
        calls.append(1)
        if len(calls) == exit_before:
            os._exit(3)
        return original(*a, **kw)

    _runner.solve_chunk = solve_chunk

sys.argv = ["ufm", "sweep", *args]
main()
