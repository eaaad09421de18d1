"""Every `ufm ...` command in the README's bash code blocks runs as written, from the repository root.

The commands run in order (a later one may read what an earlier one wrote, as a reader's would) in a
temporary folder that holds a copy of `examples/`, so relative paths resolve as from the repository root
and `ufm-results/` is not written into the checkout; `python -m ufm_jax.cli` stands in for the `ufm`
script, so that the code under test runs. Code blocks hold no placeholders (those belong in the text):
each command must exit 0, print no traceback, and finish in a few minutes. Altogether about a minute on
a 2-core CPU.
"""

import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def bash_commands(text: str) -> list[list[str]]:
    """The `ufm` commands of the ```bash blocks of a Markdown text, in order, as argument lists: each line
    (a trailing backslash continues it) split as the shell would, comments dropped, `&&` chains cut."""
    commands = []
    for block in re.findall(r"^```bash\n(.*?)^```", text, re.MULTILINE | re.DOTALL):
        for line in block.replace("\\\n", " ").splitlines():
            words = shlex.split(line, comments=True)
            chain: list[list[str]] = [[]]
            for word in words:
                if word in ("&&", ";"):
                    chain.append([])
                else:
                    chain[-1].append(word)
            commands += [c for c in chain if c and c[0] == "ufm"]
    return commands


def test_the_readme_has_ufm_commands():
    commands = bash_commands((ROOT / "README.md").read_text())
    names = [c[1] for c in commands]
    assert names[0] == "sweep" and {"solve", "sweep", "plot", "threshold"} <= set(names)
    assert bash_commands("```bash\npip install -e . && ufm sweep   # run\nufm plot a \\\n  -m b\n```\n") == [
        ["ufm", "sweep"], ["ufm", "plot", "a", "-m", "b"]]


def test_readme_commands_run_as_written(tmp_path):
    shutil.copytree(ROOT / "examples", tmp_path / "examples")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    for command in bash_commands((ROOT / "README.md").read_text()):
        shown = shlex.join(command)
        try:
            proc = subprocess.run([sys.executable, "-m", "ufm_jax.cli", *command[1:]], cwd=tmp_path, env=env,
                                  capture_output=True, text=True, timeout=300)
        except subprocess.TimeoutExpired:
            pytest.fail(f"`{shown}` did not finish in 5 minutes")
        output = proc.stdout + proc.stderr
        assert proc.returncode == 0, f"`{shown}` exited {proc.returncode}:\n{output[-3000:]}"
        assert "Traceback" not in output, f"`{shown}`:\n{output[-3000:]}"
