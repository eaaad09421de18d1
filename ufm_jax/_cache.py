"""The persistent compilation cache: a repeated solve starts warm.

Compiling a solve loop takes seconds; solving a small problem takes milliseconds. JAX can keep compiled
programs on disk (`jax_compilation_cache_dir`), so that the next process that builds the same program
(the same structure of problem, solver and devices) loads it instead. `solve` turns this on the first
time it runs, in the user cache directory, unless

- the environment variable `UFM_CACHE_DIR` names another folder (or is `off` to disable it),
- `disable_compilation_cache()` was called, or
- JAX's own `jax_compilation_cache_dir` is already set (then that one is used as it is).

The cache changes no number: a program loaded from it is the program that would have been compiled.
"""

from __future__ import annotations

import os
from pathlib import Path

import jax
from jax.experimental.compilation_cache import compilation_cache as _jax_cache

ENV = "UFM_CACHE_DIR"
_OFF = {"", "0", "off", "none", "false", "no"}
_state = {"decided": False, "disabled": False, "ours": False}


def default_cache_dir() -> Path | None:
    """`$UFM_CACHE_DIR`, or `$XDG_CACHE_HOME/ufm_jax/jax` (default `~/.cache/ufm_jax/jax`); `None` when
    `UFM_CACHE_DIR` is `off`."""
    value = os.environ.get(ENV)
    if value is not None:
        return None if value.strip().lower() in _OFF else Path(value).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "ufm_jax" / "jax"


def enable_compilation_cache(path: str | os.PathLike | None = None) -> Path | None:
    """Keep compiled programs in `path` (default `default_cache_dir()`); returns the folder in use, or
    `None` if caching is off or the folder cannot be created (then nothing is cached, nothing fails).

    Programs that took at least 0.1 s to compile are kept (JAX's default keeps only those over 1 s,
    which would miss the small verification programs of a solve)."""
    _state["decided"] = True
    _state["disabled"] = False
    current = jax.config.jax_compilation_cache_dir
    if path is None and current:
        return Path(current)
    folder = default_cache_dir() if path is None else Path(path).expanduser()
    if folder is None:
        _state["disabled"] = True
        return None
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError:
        _state["disabled"] = True
        return None
    if not os.access(folder, os.W_OK):
        _state["disabled"] = True
        return None
    _set_cache_dir(str(folder))
    _state["ours"] = True
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.1)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
    return folder


def disable_compilation_cache() -> None:
    """Turn the cache off (if `enable_compilation_cache` turned it on) and keep `solve` from turning it
    on; a folder set through JAX's own configuration is left alone."""
    _state["decided"] = True
    _state["disabled"] = True
    if _state["ours"]:
        _set_cache_dir(None)
        _state["ours"] = False


def _set_cache_dir(folder: str | None) -> None:
    """Point JAX's cache at `folder` (None: off). JAX decides whether to use its cache once, at the first
    compile, so the decision is reset too: the change holds for later compiles in this process."""
    jax.config.update("jax_compilation_cache_dir", folder)
    _jax_cache.reset_cache()


def ensure_compilation_cache() -> None:
    """Turn the cache on once per process, unless disabled (what `solve` calls)."""
    if not _state["decided"]:
        enable_compilation_cache()
