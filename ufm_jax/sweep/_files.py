"""Atomic files: a reader, or a resumed sweep, finds the old file or the new one, never half of one."""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import tempfile
from collections.abc import Iterator
from pathlib import Path

TEMP_SUFFIX = ".tmp"
MANIFEST = "manifest.sha256"


class DamagedFileError(ValueError):
    """A file whose bytes do not match its manifest line, or that cannot be parsed; the message is one
    line naming it."""


def _umask() -> int:
    # os.umask can only be read by setting it; set it straight back.
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """A temporary path beside `path` to write to (for writers that take a file name).

    When the block ends normally the file is synced, given the mode a plain `open` would give it
    (`0o666` less the umask; `mkstemp` makes it `0o600`), and renamed over `path` (`os.replace`, atomic
    on POSIX and Windows); when it raises, the temporary file is removed and `path` is left as it was.
    A process killed in between leaves a `.NAME.*.tmp` file, which `remove_temp_files` clears.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=TEMP_SUFFIX)
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()


def atomic_write(path: str | Path, data: bytes | str) -> None:
    """Write `data` (text as UTF-8) to `path` atomically."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data.encode() if isinstance(data, str) else data)


def remove_temp_files(folder: str | Path) -> list[Path]:
    """Remove the temporary files that killed writers left in `folder` and its subfolders (`.*.tmp`);
    call it only while no writer runs there (a sweep holds the folder's lock). Returns them."""
    removed = []
    for path in Path(folder).rglob(f".*{TEMP_SUFFIX}"):
        if path.is_file():
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
                removed.append(path)
    return removed


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


_LINE = re.compile(r"^([0-9a-f]{64})  (.+)$")


class Manifest:
    """`manifest.sha256`: the hash of each file of the folder (paths relative to it, `/`-separated)."""

    def __init__(self, out: Path):
        self.out = Path(out)
        self.path = Path(out) / MANIFEST
        self.entries: dict[str, str] = {}
        try:
            text = self.path.read_text(errors="replace")
        except FileNotFoundError:
            text = ""
        for line in text.splitlines():
            m = _LINE.match(line)
            if m:  # a torn or damaged line is no entry: its file is recomputed
                self.entries[m.group(2)] = m.group(1)

    def record(self, name: str, digest: str) -> None:
        """Append `digest  name` (after the file itself is in place)."""
        self.entries[name] = digest
        with open(self.path, "ab") as f:
            if f.tell() and not self._ends_with_newline():
                f.write(b"\n")  # after a torn line (a killed writer), start a fresh one
            f.write(f"{digest}  {name}\n".encode())
            f.flush()
            os.fsync(f.fileno())

    def _ends_with_newline(self) -> bool:
        with open(self.path, "rb") as f:
            f.seek(-1, os.SEEK_END)
            return f.read(1) == b"\n"

    def compact(self) -> None:
        """Rewrite the manifest with one line per file that still exists."""
        self.entries = {name: d for name, d in self.entries.items() if (self.out / name).is_file()}
        atomic_write(self.path, "".join(f"{d}  {name}\n" for name, d in self.entries.items()))

    def read(self, name: str) -> tuple[bytes | None, str]:
        """The bytes of file `name` if they match its manifest line: `(data, "")`; else `(None, why)`,
        `why` one of "missing", "unlisted", "unreadable", "damaged" (the hash differs)."""
        path = self.out / name
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            return None, "missing"
        except OSError:
            return None, "unreadable"
        expected = self.entries.get(name)
        if expected is None:
            return None, "unlisted"
        if sha256(data) != expected:
            return None, "damaged"
        return data, ""

    def write(self, name: str, data: bytes) -> None:
        """Write file `name` atomically and record its hash."""
        atomic_write(self.out / name, data)
        self.record(name, sha256(data))
