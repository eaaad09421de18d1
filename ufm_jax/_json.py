"""The package's one conversion of results into JSON types."""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np


def jsonable(x):
    """`x` with its NumPy and JAX scalars and arrays, tuples and mappings turned into JSON types.

    Arrays become (nested) lists, NumPy scalars Python scalars, tuples lists, mapping keys strings;
    `NaN` and `±inf` become `None` (JSON has neither). Anything else is returned as it is, so that
    `json.dumps` refuses what it cannot write.
    """
    if isinstance(x, Mapping):
        return {str(k): jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [jsonable(v) for v in x]
    if isinstance(x, float):
        return x if math.isfinite(x) else None
    if x is None or isinstance(x, (bool, int, str)):
        return x
    if isinstance(x, np.generic) or hasattr(x, "__array__"):
        return jsonable(np.asarray(x).tolist())
    return x
