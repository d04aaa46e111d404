"""Every Python code block in docs/ and the README runs (blocks of one page share a namespace)."""

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = sorted((ROOT / "docs").glob("*.md")) + [ROOT / "README.md"]


def code_blocks(page: Path) -> list[str]:
    return re.findall(r"```python\n(.*?)```", page.read_text(), flags=re.S)


def test_docs_have_pages():
    assert PAGES


@pytest.fixture
def restore_settings(monkeypatch):
    """Pages may call ``sp.configure()``: its settings stay with the page."""
    import os
    import warnings

    import jax

    cache = jax.config.jax_compilation_cache_dir
    monkeypatch.setenv("XLA_FLAGS", os.environ.get("XLA_FLAGS", ""))
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="sdeppl.configure: JAX has already")
        yield
    jax.config.update("jax_compilation_cache_dir", cache)


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_page_examples_run(page, restore_settings):
    namespace = {"__name__": f"docs_{page.stem}"}
    for block in code_blocks(page):
        exec(compile(block, str(page), "exec"), namespace)
