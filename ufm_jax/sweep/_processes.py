"""Several processes under `jax.distributed` (`ufm sweep --distributed`).

Every process runs the same command: `jax.devices()` spans all of them and every process takes part in
each chunk's solve (its batch axis is sharded over all devices). Process 0 alone holds the lock,
decides which chunks are done (broadcast to the others) and writes every file. A check that fails on
any process (the folder, the memory) stops every process with the same message, none left waiting in a
collective.
"""

from __future__ import annotations

import jax
import numpy as np
from jax.experimental import multihost_utils

from ._config import SweepConfigError
from ._store import SweepRunError


def is_writer() -> bool:
    """Only process 0 writes files under `jax.distributed`."""
    return jax.process_index() == 0


def broadcast_done(done: list[bool]) -> list[bool]:
    """Process 0's list of finished chunks, on every process."""
    if jax.process_count() == 1:
        return done
    flags = multihost_utils.broadcast_one_to_all(np.asarray(done, dtype=np.int32))
    return [bool(x) for x in np.asarray(flags)]


def _agree(message: str) -> str:
    """Under `jax.distributed`: the first non-empty message of any process, on every process (so that a
    check failing on one process stops all of them, none left waiting in a collective)."""
    if jax.process_count() == 1:
        return message
    buf = np.zeros(2048, dtype=np.uint8)
    data = message.encode()[:2048]
    buf[:len(data)] = np.frombuffer(data, dtype=np.uint8)
    rows = np.asarray(multihost_utils.process_allgather(buf))
    for row in rows.reshape(-1, buf.size):
        text = bytes(row).rstrip(b"\0").decode(errors="replace")
        if text:
            return text
    return ""


def together(step):
    """Run `step()` on every process; if it raises a `SweepConfigError` or `SweepRunError` on any of
    them, raise that message on all of them."""
    if jax.process_count() == 1:
        return step()
    result, message, kind = None, "", SweepRunError
    try:
        result = step()
    except (SweepConfigError, SweepRunError) as e:
        message, kind = str(e), type(e)
    agreed = _agree(message)
    if agreed:
        raise (kind if message else SweepRunError)(agreed)
    return result
