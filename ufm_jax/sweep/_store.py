"""A sweep's results folder: its lock, its fingerprint, and the checksums of everything it holds.

    <output>/
      sweep.lock         an OS file lock, held by the sweep that writes here (it holds the writer's PID,
                         host and command); the OS releases it when that process ends, however it ends
      fingerprint.json   what every number depends on (`fingerprint`); a sweep with another fingerprint
                         refuses the folder, naming the difference, so results computed two ways never mix
      manifest.sha256    the SHA-256 of every chunk and data file (dataset.nc, results.csv, report.md;
                         not the figures, which are drawn from the dataset), one `HASH  PATH` line each (the
                         format of `sha256sum -c`); lines are appended as files are written, and the file
                         is rewritten without stale lines at the start and the end of each run

Every read of a chunk or of `dataset.nc` by a sweep compares the file's hash with its manifest line: a
missing, damaged or unlisted file is recomputed (a chunk) or rebuilt (the dataset), with one warning line,
and never used as it is.
"""

from __future__ import annotations

import contextlib
import datetime
import hashlib
import json
import os
import shutil
import socket
import sys
from pathlib import Path

import jax
import jaxlib

from .. import __version__
from ._config import SweepConfig
from ._files import atomic_write

try:
    import fcntl
except ImportError:  # Windows
    fcntl = None
    import msvcrt

LOCK = "sweep.lock"
FINGERPRINT = "fingerprint.json"


class SweepRunError(RuntimeError):
    """A sweep that cannot run in (or read) its results folder; the message is one line that names the
    folder, the file or the other sweep, and what to do."""


# ---- the fingerprint ------------------------------------------------------------------------------------


def fingerprint(config: SweepConfig, num_devices: int) -> dict:
    """Everything that changes a sweep's numbers: the config's problem, grid, solver and run settings
    (`SweepConfig.fingerprint`), the working precision (`jax_enable_x64`), the number of devices a
    batch is sharded over (1 without sharding; another count rounds differently), the platform, and
    the versions of ufm_jax, JAX and jaxlib. Not the process count: two processes with one device each
    compute what one process with two devices computes."""
    precision = jax.dtypes.canonicalize_dtype(jax.numpy.float64).name
    return {
        "config": config.fingerprint(),
        "precision": precision,
        "devices": num_devices if config.run.shard else 1,
        "platform": jax.default_backend(),
        "ufm_jax": __version__,
        "jax": jax.__version__,
        "jaxlib": jaxlib.__version__,
    }


def fingerprint_hash(content: dict) -> str:
    return hashlib.sha256(json.dumps(content, sort_keys=True).encode()).hexdigest()[:16]


def _short(value) -> str:
    text = json.dumps(value) if not isinstance(value, str) else value
    return text if len(text) <= 40 else text[:37] + "..."


def _config_differences(old: dict, new: dict, prefix: str = "") -> list[str]:
    out = []
    for key in dict.fromkeys([*old, *new]):
        a, b = old.get(key), new.get(key)
        if a == b:
            continue
        if isinstance(a, dict) and isinstance(b, dict):
            out += _config_differences(a, b, f"{prefix}{key}.")
        else:
            out.append(f"{prefix}{key}: {_short(a) if a is not None else 'unset'} there, "
                       f"{_short(b) if b is not None else 'unset'} here")
    return out


def differences(stored: dict, content: dict, stored_config: dict | None, config: SweepConfig) -> str:
    """What differs between a stored fingerprint (and its config, if readable) and this run's."""
    out = []
    for key in dict.fromkeys([*stored, *content]):
        if key == "config" or stored.get(key) == content.get(key):
            continue
        out.append(f"{key}: {stored.get(key)} there, {content.get(key)} here")
    if stored.get("config") != content.get("config"):
        found = []
        if stored_config is not None:
            keep = ("problem", "grid", "solver", "run")
            found = _config_differences({k: stored_config.get(k) for k in keep},
                                        {k: config.to_dict().get(k) for k in keep})
        out = (found or ["the config's problem, grid, solver or run settings"]) + out
    return "; ".join(out[:3]) + (f"; and {len(out) - 3} more" if len(out) > 3 else "")


def _read_json(path: Path):
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _refusal(out: Path, content: dict, config: SweepConfig) -> str:
    """Why a sweep with `content` cannot use `out` ("" if it can); reads `fingerprint.json` only."""
    path = out / FINGERPRINT
    if not path.exists():
        return ""
    stored = _read_json(path)
    if not isinstance(stored, dict) or not isinstance(stored.get("content"), dict):
        return (f"{path} is damaged, so what {out} holds cannot be told: remove {out} to start over, or "
                "use another --out.")
    if stored["content"] == content:
        return ""
    diff = differences(stored["content"], content, _read_json(out / "config.json"), config)
    return (f"{out} holds a sweep computed another way ({diff}); mixing them would give a dataset of "
            f"two kinds: use another --out, or remove {out} to recompute.")


def claim(out: Path, content: dict, config: SweepConfig) -> bool:
    """Make `out` this sweep's folder: write its fingerprint, or check the one it holds.

    **Returns:** whether the folder already held this sweep.

    **Raises:** `SweepRunError` naming the difference when it holds a sweep with another fingerprint.
    """
    path = out / FINGERPRINT
    refusal = _refusal(out, content, config)
    if refusal:
        raise SweepRunError(refusal)
    if path.exists():
        return True
    atomic_write(path, json.dumps({"fingerprint": fingerprint_hash(content), "content": content},
                                  indent=2, sort_keys=True) + "\n")
    return False


def describe_folder(out: Path, content: dict, config: SweepConfig) -> tuple[str, str]:
    """What a run would find in `out`, and the error it would stop with ("" if none), for `--dry-run`;
    reads only `fingerprint.json`."""
    if not out.exists():
        return f"{out} does not exist (it will be created)", ""
    if not out.is_dir():
        return f"{out} is a file", ""  # check_output names it
    refusal = _refusal(out, content, config)
    if refusal:
        return f"{out} holds another sweep (a run would refuse it)", refusal
    if (out / FINGERPRINT).exists():
        return f"{out} holds this sweep (a run resumes it)", ""
    return f"{out} exists and holds no sweep", ""


# ---- the lock -------------------------------------------------------------------------------------------


def _try_lock(fd: int) -> bool:
    try:
        if fcntl is not None:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        else:
            msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
    except OSError:  # BlockingIOError where POSIX says EWOULDBLOCK; PermissionError on Windows
        return False
    return True


@contextlib.contextmanager
def locked(out: Path):
    """Hold `out/sweep.lock` for the block: an OS lock (`flock`), so a lock whose holder died (killed,
    crashed, its machine gone for a local disk) is free at once; no timeout, no stale PID to judge.

    **Raises:** `SweepRunError` naming the holder (its PID, host, start time and command) when another
    process holds it.
    """
    path = out / LOCK
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    except OSError as e:
        raise SweepRunError(f"cannot create the lock file {path}: {e.strerror}.") from None
    try:
        if not _try_lock(fd):
            holder = _read_json(path) or {}
            who = (f"pid {holder.get('pid')} on {holder.get('host')}, started {holder.get('started')}: "
                   f"{holder.get('command')}") if holder else "another process"
            raise SweepRunError(f"{out} is in use by another sweep ({who}); wait for it to end, stop "
                                "it, or use another --out.")
        info = {"pid": os.getpid(), "host": socket.gethostname(),
                "started": datetime.datetime.now().isoformat(timespec="seconds"),
                "command": " ".join(sys.argv) or "python"}
        os.ftruncate(fd, 0)
        os.write(fd, json.dumps(info).encode())
        yield
    finally:
        os.close(fd)  # releases the lock


# ---- disk ------------------------------------------------------------------------------------------------


def free_disk(path: Path) -> int | None:
    """Free bytes on the file system that holds `path` (or its nearest existing parent)."""
    for parent in (path, *path.parents):
        if parent.exists():
            try:
                return shutil.disk_usage(parent).free
            except OSError:
                return None
    return None
