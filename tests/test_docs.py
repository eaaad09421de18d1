"""The documentation site keeps up with the package: every public name has an API entry, every page and
tutorial is in the navigation, and the tutorials use only the public API in float64.

These checks read files only (no mkdocs needed); `mkdocs build --strict` itself runs in CI as its own
step, and executes the tutorials.
"""

import re
from pathlib import Path

import pytest

import ufm_jax

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
MKDOCS = (ROOT / "mkdocs.yml").read_text()
TUTORIALS = sorted((DOCS / "tutorials").glob("*.py"))


def _public_names():
    """The names `ufm_jax/__init__.py` exports: `from .x import A as A` and module-level assignments."""
    source = (ROOT / "ufm_jax" / "__init__.py").read_text()
    exported = re.findall(r"^from \.\S* import (\w+) as \1$", source, re.MULTILINE)
    assigned = re.findall(r"^(\w+) = ", source, re.MULTILINE)
    return sorted({n for n in exported + assigned if not n.startswith("_")})


def _api_anchors(page: str) -> set[str]:
    text = (DOCS / "api" / page).read_text()
    rendered = set(re.findall(r"^::: (ufm_jax[\w.]*)$", text, re.MULTILINE))
    explicit = set(re.findall(r"\{#(ufm_jax[\w.]*)\s*\}", text))
    return rendered | explicit


def test_every_public_name_has_an_api_entry():
    anchors = _api_anchors("ufm_jax.md")
    # Presets are rendered from the family registry by the build hook (`<!-- ufm:presets -->`).
    assert "<!-- ufm:presets -->" in (DOCS / "api" / "ufm_jax.md").read_text()
    presets = {name for family in ufm_jax.FAMILIES.values() for name in family.presets}
    submodules = {"theory", "metrics"}  # their own pages
    missing = [name for name in _public_names()
               if f"ufm_jax.{name}" not in anchors and name not in presets | submodules]
    assert not missing, f"public names without an entry in docs/api/ufm_jax.md: {missing}"
    for page, module in (("theory.md", "ufm_jax.theory"), ("metrics.md", "ufm_jax.metrics"),
                         ("sweep.md", "ufm_jax.sweep")):
        assert module in _api_anchors(page)


def test_every_page_is_in_the_navigation():
    nav = set(re.findall(r":\s*(\S+\.(?:md|py))\s*$", MKDOCS, re.MULTILINE))
    pages = {p.relative_to(DOCS).as_posix() for p in DOCS.rglob("*.md")} | {
        p.relative_to(DOCS).as_posix() for p in TUTORIALS}
    assert pages - nav == set(), f"pages missing from the nav of mkdocs.yml: {sorted(pages - nav)}"
    assert nav - pages == set(), f"nav entries without a page: {sorted(nav - pages)}"


def test_readme_links_still_resolve():
    """README links docs/errata.md and docs/adding_a_family.md; the site must not move them."""
    readme = (ROOT / "README.md").read_text()
    for target in re.findall(r"\]\((docs/[^)#]+)", readme):
        assert (ROOT / target).exists(), target


@pytest.mark.parametrize("path", TUTORIALS, ids=lambda p: p.stem)
def test_tutorial_uses_the_public_api_in_float64(path):
    text = path.read_text()
    assert text.startswith("# ---\n# jupyter:"), "a jupytext percent-format header"
    assert "# %% [markdown]\n# # " in text, "a title cell"
    assert 'jax.config.update("jax_enable_x64", True)' in text
    assert "import ufm_jax as u" in text
    private = re.findall(r"\bufm_jax\.\w*\._\w+|\bu\._\w+|from ufm_jax\S* import", text)
    assert not private, f"tutorials use only the public API (`import ufm_jax as u`): {private}"
    assert "u.check(" in text and "u.solve(" in text
