"""Sweep data you can trust: the fingerprint, checksums, the lock, pre-flight checks, lazy planning,
restored outputs, and a real two-process run.

The sweeps here have the shapes of tests/test_sweep.py (CE, K = 4, d = 3, one weighted column per class,
chunks of 2), so the in-process ones reuse its compiled programs.
"""

import errno
import json
import os
import shutil
import socket
import subprocess
import sys
import time
import tracemalloc
from pathlib import Path

import jax
import numpy as np
import pytest
import xarray as xr
from typer.testing import CliRunner

from _sweeps import TINY, tiny_config
from ufm_jax import _memory
from ufm_jax.cli import app
from ufm_jax.sweep import load_config, load_dataset, run_sweep
from ufm_jax.sweep import _files, _plan, _runner
from ufm_jax.sweep._store import SweepRunError, fingerprint, fingerprint_hash

ROOT = Path(__file__).resolve().parents[1]



_config = tiny_config


@pytest.fixture(scope="module")
def full_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("full")
    run_sweep(_config(), output=out, progress=False)
    return out


@pytest.fixture
def copy(full_run, tmp_path):
    """A copy of the finished sweep's folder."""
    out = tmp_path / "copy"
    shutil.copytree(full_run, out)
    return out


@pytest.fixture
def config_file(tmp_path):
    path = tmp_path / "tiny.toml"
    path.write_text(TINY)
    return path


def _chunks(out: Path) -> list[Path]:
    return sorted((out / "chunks").glob("*.npz"))


def _identical(a: Path, b: Path) -> None:
    xr.testing.assert_identical(load_dataset(a / "dataset.nc"), load_dataset(b / "dataset.nc"))


def _one_line(output: str) -> str:
    lines = [line for line in output.splitlines() if line.strip()]
    assert len(lines) == 1, output
    return lines[0]


def _env() -> dict:
    """The environment of a child process: this checkout's ufm_jax, one CPU device, one BLAS thread."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
           "JAX_PLATFORMS": "cpu", "OPENBLAS_NUM_THREADS": "1",
           "XLA_FLAGS": "--xla_force_host_platform_device_count=1"}
    return env


# ---- 1. the fingerprint -------------------------------------------------------------------------------


@pytest.mark.floors
def test_fingerprint_covers_what_changes_a_number(full_run):
    cfg = _config()

    def fp(config=cfg, devices=2):
        return fingerprint_hash(fingerprint(config, devices))

    ref = fp()
    with jax.enable_x64(False):
        assert fp() != ref  # the working precision
    for sets in (["run.slots=4"], ["solver.starts=2"], ["solver.method='lockstep'"], ["solver.gtol=1e-8"],
                 ["solver.max_steps=100"], ["solver.seed=1"], ["solver.init_scale=2.0"], ["run.chunk_size=4"],
                 ["run.memory_gb=1.0"], ["problem.n_b=20"], ["run.shard=false"]):
        assert fp(_config(sets=sets)) != ref, sets
    assert fp(devices=1) != ref  # sharded over another device count: rounds differently
    unsharded = _config(sets=["run.shard=false"])
    assert fp(unsharded, 1) == fp(unsharded, 2)  # unsharded, the device count changes nothing
    assert fp(_config(sets=["run.slots=32"])) == ref  # slots = 0 means DEFAULT_SLOTS = 32
    assert fp(_config(sets=["name='other'", "plot.formats=['pdf']"])) == ref  # no number changes
    content = fingerprint(cfg, 2)
    assert set(content) == {"config", "precision", "devices", "platform", "ufm_jax", "jax", "jaxlib"}
    # ... and the dataset stores it.
    ds = load_dataset(full_run / "dataset.nc")
    stored = fingerprint(cfg, len(jax.devices()))
    assert ds.attrs["fingerprint"] == fingerprint_hash(stored)
    assert json.loads(ds.attrs["fingerprint_json"]) == stored


def test_a_rerun_in_another_precision_is_refused_naming_it(copy, full_run):
    # Measured 1: `ufm sweep cfg -o D`, then `--x32`, then the first command again.
    before = (copy / "dataset.nc").read_bytes()
    with jax.enable_x64(False):
        with pytest.raises(SweepRunError, match="precision: float64 there, float32 here"):
            run_sweep(_config(), output=copy, progress=False)
    assert (copy / "dataset.nc").read_bytes() == before
    again = run_sweep(_config(), output=copy, progress=False)
    assert again.computed_points == 0
    _identical(copy, full_run)


def test_another_config_in_the_same_folder_exits_2_naming_the_difference(copy, full_run, tmp_path):
    # Measured 4: two sweeps with different configs into one folder.
    other = tmp_path / "other.toml"
    other.write_text(TINY.replace("[run]", "[solver]\nmax_steps = 50\n[run]"))
    result = CliRunner().invoke(app, ["sweep", str(other), "--out", str(copy), "-q"])
    assert result.exit_code == 2
    line = _one_line(result.output)
    assert line.startswith("error:") and "solver.max_steps: unset there, 50 here" in line, line
    assert (copy / "config.toml").read_text() == (full_run / "config.toml").read_text()
    _identical(copy, full_run)


# ---- 2. checksums ----------------------------------------------------------------------------------------


def _change_numbers(path: Path) -> None:
    rec = dict(np.load(path))
    rec["objective"] = rec["objective"] + 0.645
    with open(path, "wb") as f:
        np.savez(f, **rec)  # still a valid file


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[:1000])


def _flip(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


@pytest.mark.floors
@pytest.mark.parametrize("damage", [_change_numbers, _truncate, _flip])
def test_a_damaged_chunk_is_recomputed_with_one_warning(copy, full_run, capsys, damage):
    # Measured 2 and 3: a chunk with changed numbers was used silently; a truncated or flipped one
    # stopped every rerun with a traceback.
    chunk = _chunks(copy)[1]
    damage(chunk)
    result = run_sweep(_config(), output=copy, progress=False)
    err = capsys.readouterr().err
    assert result.computed_points == 2
    assert _one_line(err).startswith("warning:") and chunk.name in err
    _identical(copy, full_run)


def test_a_damaged_dataset_is_rebuilt_and_plot_says_so(copy, full_run, capsys):
    _flip(copy / "dataset.nc")
    result = CliRunner().invoke(app, ["plot", str(copy)])
    assert result.exit_code == 2
    assert "dataset.nc is damaged" in _one_line(result.output)
    again = run_sweep(_config(), output=copy, progress=False)
    assert again.computed_points == 0
    err = capsys.readouterr().err
    assert _one_line(err).startswith("warning:") and "dataset.nc" in err
    _identical(copy, full_run)
    # The manifest lists every chunk and output, in the format of `sha256sum -c`.
    lines = (copy / "manifest.sha256").read_text().splitlines()
    listed = {line.split("  ", 1)[1] for line in lines}
    assert listed == {f"chunks/{c.name}" for c in _chunks(copy)} | {"dataset.nc", "results.csv", "report.md"}


# ---- 3. the lock -----------------------------------------------------------------------------------------


def test_a_second_run_exits_2_naming_the_first_and_a_killed_holder_frees_the_lock(copy, config_file):
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time\nfrom pathlib import Path\n"
         "from ufm_jax.sweep._store import locked\nwith locked(Path(sys.argv[1])):\n"
         "    print('locked', flush=True)\n    time.sleep(300)\n", str(copy)],
        stdout=subprocess.PIPE, text=True, env=_env())
    try:
        assert holder.stdout.readline().strip() == "locked"
        result = CliRunner().invoke(app, ["sweep", str(config_file), "--out", str(copy), "-q"])
        assert result.exit_code == 2
        line = _one_line(result.output)
        assert f"pid {holder.pid}" in line and "in use by another sweep" in line, line
    finally:
        holder.kill()  # SIGKILL: no cleanup; the OS releases the lock at once
        holder.wait()
    result = CliRunner().invoke(app, ["sweep", str(config_file), "--out", str(copy)])
    assert result.exit_code == 0, result.output
    # The plan is stated before anything is solved; then the summary.
    assert "tiny: 6 points (6 done) in 1 compiled group, 3 chunks; one batch needs" in result.output
    assert "(0 computed" in result.output


# ---- 4. pre-flight ---------------------------------------------------------------------------------------


def _make_file(out: Path) -> Path:
    out.write_text("not a folder")
    return out


def _make_chunks_file(out: Path) -> Path:
    out.mkdir()
    (out / "chunks").write_text("not a folder")
    return out


@pytest.mark.parametrize("setup,message", [
    (_make_file, "is a file, not a folder"),
    (_make_chunks_file, "chunks is a file, not a folder"),
])
def test_an_unusable_output_exits_2_before_compiling(tmp_path, config_file, count_traces, setup, message):
    out = setup(tmp_path / "out")
    t0 = time.perf_counter()
    result = CliRunner().invoke(app, ["sweep", str(config_file), "--out", str(out), "-q"])
    assert result.exit_code == 2
    assert message in _one_line(result.output)
    assert count_traces() == 0 and time.perf_counter() - t0 < 10


def test_an_unwritable_output_exits_2(tmp_path, config_file, count_traces, monkeypatch):
    parent = tmp_path / "locked"
    parent.mkdir(mode=0o500)
    # Root may write anywhere (CI containers run as root): the folder also reads as unwritable there.
    access = os.access
    monkeypatch.setattr(os, "access", lambda path, mode, **kw: Path(path) != parent and access(path, mode, **kw))
    result = CliRunner().invoke(app, ["sweep", str(config_file), "--out", str(parent / "out"), "-q"])
    assert result.exit_code == 2 and "not writable" in _one_line(result.output)
    assert count_traces() == 0


def test_a_full_disk_exits_2_before_compiling(tmp_path, config_file, count_traces, monkeypatch):
    monkeypatch.setattr(_plan, "free_disk", lambda path: 1000)
    out = tmp_path / "out"
    result = CliRunner().invoke(app, ["sweep", str(config_file), "--out", str(out), "-q"])
    assert result.exit_code == 2
    assert "on disk" in _one_line(result.output) and "1 kB free" in result.output
    assert count_traces() == 0 and not out.exists()


def test_a_write_that_fails_mid_run_is_one_line(tmp_path, config_file, monkeypatch):
    def full(self, name, data):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(_files.Manifest, "write", full)
    result = CliRunner().invoke(app, ["sweep", str(config_file), "--out", str(tmp_path / "out"), "-q"])
    assert result.exit_code == 2
    line = _one_line(result.output)
    assert "cannot write" in line and "No space left on device" in line and "rerun" in line


def test_the_memory_of_one_batch_is_checked_before_compiling(tmp_path, config_file, count_traces,
                                                             monkeypatch):
    # K = 1000 explicit classes of 10^5 samples in d = 10^5: the full problem's features alone are
    # K × 10^5 × d × 8 B = 8e13 B.
    huge = TINY.replace("k_a = 2\nk_b = 2\nn_b = 10\nper_class = 1",
                        "k_a = 500\nk_b = 500\nn_b = 100000").replace("dim = 3", "dim = 100000").replace(
                            "ratio = [1, 4]", "ratio = [1]")
    path = tmp_path / "huge.toml"
    path.write_text(huge)
    t0 = time.perf_counter()
    result = CliRunner().invoke(app, ["sweep", str(path), "--out", str(tmp_path / "out"), "-q"])
    assert result.exit_code == 2
    line = _one_line(result.output)
    for part in ("classes K = 1000", "dim d = 100000", "per-class 100000", "bytes", "available"):
        assert part in line, line
    assert count_traces() == 0 and time.perf_counter() - t0 < 10 and not (tmp_path / "out").exists()
    # A batch that does not fit while one point does: a smaller chunk is the advice.
    monkeypatch.setattr(_memory, "available_memory", lambda: (10_000, "test"))
    result = CliRunner().invoke(app, ["sweep", str(config_file), "--out", str(tmp_path / "out"), "-q"])
    assert result.exit_code == 2
    assert "one batch of group" in result.output and "run.chunk_size" in _one_line(result.output)


@pytest.mark.parametrize("args,parts", [
    (["--classes", "100000x1000", "--dim", "100000"], ["K = 1000", "dim d = 100000", "per-class 100000"]),
    (["--classes", "10000000x2", "--dim", "16"], ["K = 2", "dim d = 16", "per-class 10000000"]),
])
def test_ufm_solve_checks_memory_within_seconds(monkeypatch, args, parts):
    # Measured 7. The second problem (2.6 GB of features in float64, about 15 GB at the peak) fits on
    # a large machine; here the machine is told it has 1 GB.
    monkeypatch.setattr(_memory, "available_memory", lambda: (10**9, "test"))
    t0 = time.perf_counter()
    result = CliRunner().invoke(app, ["solve", *args, "--x64"])
    assert result.exit_code == 2
    line = _one_line(result.output)
    assert all(p in line for p in [*parts, "bytes"]), line
    assert time.perf_counter() - t0 < 10


def _run_cli(args: list[str], timeout: float = 120) -> tuple[subprocess.CompletedProcess, float, int]:
    """`ufm ARGS` in a child process: its result, wall time and peak resident memory (bytes)."""
    # The peak of this process only: Linux's VmHWM (ru_maxrss would keep the forked parent's peak
    # across exec), else ru_maxrss (kB; bytes on macOS).
    code = ("import resource, sys\nfrom ufm_jax.cli import main\nsys.argv = ['ufm', *sys.argv[1:]]\n"
            "try:\n    main()\nfinally:\n"
            "    try:\n        rss = [int(l.split()[1]) * 1024 for l in open('/proc/self/status')"
            " if l.startswith('VmHWM:')][0]\n"
            "    except OSError:\n        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * "
            "(1 if sys.platform == 'darwin' else 1024)\n"
            "    print(f'maxrss={rss}', file=sys.stderr)\n")
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, env=_env(),
                          timeout=timeout)
    seconds = time.perf_counter() - t0
    rss = int(proc.stderr.rsplit("maxrss=", 1)[1])
    return proc, seconds, rss


def test_dry_run_prints_the_count_and_creates_nothing(tmp_path, config_file):
    out = tmp_path / "new" / "results"
    proc, _, _ = _run_cli(["sweep", str(config_file), "--out", str(out), "--dry-run"])
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "6\n"
    for part in ("1 compiled group", "3 chunks of 2", "memory:", "disk:", "time: about", "will be created"):
        assert part in proc.stderr, proc.stderr
    assert not (tmp_path / "new").exists()


# ---- 5. lazy planning ------------------------------------------------------------------------------------


def test_a_million_points_dry_run_in_seconds(tmp_path, config_file):
    out = tmp_path / "out"
    proc, seconds, rss = _run_cli(["sweep", str(config_file), "--out", str(out), "--dry-run",
                                   "--axis", "lam_z=log:1e-3:1:1000", "--axis", "n_b=lin:10:1000:1000",
                                   "--axis", "ratio=1,4", "--set", "run.chunk_size=0"])
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "2000000\n"
    assert seconds < 20 and rss < 1.5e9, (seconds, rss)
    assert not out.exists()


def test_ten_million_points_start_solving_at_once(tmp_path, monkeypatch):
    # 10^4 λ × 10^3 ratios: the runner names, checks and queues 39 063 chunks of 256 without making a
    # point; the first chunk's problems are made when it is solved.
    cfg = _config(axes=["lam_z=log:1e-4:1:10000", "ratio=lin:1:20:1000"], sets=["run.chunk_size=0"])

    def stop(config, batch, *args, **kwargs):
        assert len(batch) == 256 and batch.problem.lam_h.shape == (256,)
        raise KeyboardInterrupt

    monkeypatch.setattr(_runner, "solve_chunk", stop)
    tracemalloc.start()
    t0 = time.perf_counter()
    try:
        with pytest.raises(KeyboardInterrupt):
            run_sweep(cfg, output=tmp_path / "big", progress=False)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    # The grid's flat positions (8 B × 10^7) dominate; no per-point object is made.
    assert time.perf_counter() - t0 < 30 and peak < 400e6, (time.perf_counter() - t0, peak)


# ---- 7. restored outputs, temp files, run log, umask -----------------------------------------------------


def test_a_rerun_restores_missing_outputs_cleans_temp_files_and_appends_the_log(copy, full_run):
    for name in ("results.csv", "report.md", "figures/minority_spread.png", "config.toml", "dataset.nc"):
        (copy / name).unlink()
    (copy / ".results.csv.abc123.tmp").write_text("half")
    (copy / "chunks" / ".x.npz.def456.tmp").write_bytes(b"")
    result = run_sweep(_config(), output=copy, progress=False)
    assert result.computed_points == 0
    for name in ("results.csv", "report.md", "config.toml"):
        assert (copy / name).read_text() == (full_run / name).read_text(), name
    assert (copy / "figures" / "minority_spread.png").is_file()
    _identical(copy, full_run)
    assert not list(copy.rglob("*.tmp"))
    runs = json.loads((copy / "run_log.json").read_text())
    assert [r["computed_points"] for r in runs] == [6, 0] and runs[-1]["status"] == "completed"
    assert [c["points"] for c in runs[0]["chunks"]] == [2, 2, 2]


@pytest.mark.skipif(os.name != "posix", reason="POSIX file modes")
def test_files_respect_the_umask(copy):
    _chunks(copy)[0].unlink()
    (copy / "results.csv").unlink()
    (copy / "dataset.nc").unlink()
    old = os.umask(0o027)
    try:
        run_sweep(_config(), output=copy, progress=False, figures=False)
    finally:
        os.umask(old)
    for path in (_chunks(copy)[0], copy / "results.csv", copy / "dataset.nc", copy / "manifest.sha256"):
        assert path.stat().st_mode & 0o777 == 0o640, path


# ---- 8. two processes ------------------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _two_processes(config_file: Path, out: Path, cache: Path, exit_before_chunk: int | None = None
                   ) -> list[subprocess.Popen]:
    port = _free_port()
    env = {**_env(), "JAX_COMPILATION_CACHE_DIR": str(cache),
           "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0"}
    procs = []
    for i in range(2):
        kill = ["--exit-before-chunk", str(exit_before_chunk)] if exit_before_chunk and i == 0 else []
        procs.append(subprocess.Popen(
            [sys.executable, str(ROOT / "tests" / "launch_sweep.py"), *kill, str(config_file), "--out",
             str(out), "--quiet", "--no-figures", "--coordinator", f"127.0.0.1:{port}",
             "--num-processes", "2", "--process-id", str(i)],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env))
    return procs


@pytest.mark.floors
def test_two_processes_give_the_single_process_dataset_and_resume_after_a_kill(full_run, config_file,
                                                                                tmp_path):
    # Process 0 dies (as if killed) about to solve its second chunk, after writing the first; the
    # scheduler then kills the other. The rerun of both completes, and the dataset equals the
    # single-process run's (one process with two devices = two processes with one device each).
    out, cache = tmp_path / "out", tmp_path / "cache"
    first = _two_processes(config_file, out, cache, exit_before_chunk=2)
    assert first[0].wait(timeout=120) == 3, first[0].communicate()[1]
    first[1].kill()
    first[1].communicate()
    assert len(_chunks(out)) == 1 and not (out / "dataset.nc").exists()
    second = _two_processes(config_file, out, cache)
    results = [p.communicate(timeout=120) for p in second]
    assert [p.returncode for p in second] == [0, 0], results
    assert "6 points: 6 certified" in results[0][0] and "points:" not in results[1][0]
    mine, single = load_dataset(out / "dataset.nc"), load_dataset(full_run / "dataset.nc")
    assert mine.attrs["fingerprint"] == single.attrs["fingerprint"]
    # The configs differ in their output folder only.
    mine.attrs, single.attrs = {}, {}
    xr.testing.assert_identical(mine, single)
    runs = json.loads((out / "run_log.json").read_text())
    assert [(r["processes"], r["computed_points"]) for r in runs] == [(2, 4)]
    # Only process 0 held the lock.
    assert json.loads((out / "sweep.lock").read_text())["pid"] == second[0].pid
