"""capkit's import layers (bench/layers.py): computed from the code, cycles refused, and docs/architecture.md's
listing the same as the code's."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def layers_module():
    spec = importlib.util.spec_from_file_location("capkit_layers", REPO / "bench" / "layers.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def write_package(root: Path, files: dict) -> Path:
    for name, source in files.items():
        path = root / "capkit" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(source)
    return root / "capkit"


def test_layers_count_module_level_imports_only(tmp_path, monkeypatch):
    """A layer is the longest chain of module-level imports; lazy and TYPE_CHECKING imports run later or never."""
    layers = layers_module()
    monkeypatch.setattr(layers, "ROOT", write_package(tmp_path, {
        "__init__.py": "",
        "a.py": "import os\n",
        "b.py": "from capkit import a\n",
        "c.py": ("from typing import TYPE_CHECKING\nfrom capkit.b import x\n"
                 "if TYPE_CHECKING:\n    from capkit import d\n"
                 "def f():\n    from capkit import d\n"),
        "d.py": "from capkit import a, c\n",
        "sub/__init__.py": "from .e import y\n",
        "sub/e.py": "from capkit import a\n",
    }))
    got = {m: (layer, deps) for layer, m, _, deps in layers.layers()}
    assert got["a"] == (0, [])
    assert got["b"] == (1, ["a"])
    assert got["c"] == (2, ["b"])  # neither the annotation's import of d nor the lazy one counts
    assert got["d"] == (3, ["a", "c"])
    assert got["sub/e"] == (1, ["a"])
    assert got["sub/__init__"] == (2, ["sub/e"])


def test_an_import_cycle_is_an_error(tmp_path, monkeypatch):
    layers = layers_module()
    monkeypatch.setattr(layers, "ROOT", write_package(tmp_path, {
        "__init__.py": "", "a.py": "from capkit import b\n", "b.py": "from capkit.c import z\n",
        "c.py": "import capkit.a\n"}))
    with pytest.raises(SystemExit, match="import cycle: (a -> b -> c -> a|b -> c -> a -> b|c -> a -> b -> c)"):
        layers.layers()


def test_the_docs_list_the_layers_the_code_has():
    """docs/architecture.md shows bench/layers.py's table of the current code and the files' line counts
    (`python bench/layers.py --docs` writes both after code moves)."""
    out = subprocess.run([sys.executable, str(REPO / "bench" / "layers.py")], capture_output=True, text=True,
                         check=True).stdout
    doc = (REPO / "docs" / "architecture.md").read_text(encoding="utf-8")
    start = doc.index("```\nlayer  module") + 4
    listing = doc[start:doc.index("```", start)]
    assert listing.strip() == out.strip()
    table = {line.split("`")[1]: int(line.split(" | ")[1]) for line in doc.splitlines()
             if line.startswith("| `capkit/") and "`, `" not in line.split(" | ")[0]}
    for path, lines in table.items():  # the module table's line counts are the files'
        assert len((REPO / path).read_text(encoding="utf-8").splitlines()) == lines, path
    modules = {p.relative_to(REPO).as_posix() for p in (REPO / "capkit").rglob("*.py")
               if p.name not in ("__init__.py", "__main__.py")}
    assert modules <= set(table), sorted(modules - set(table))  # every module has its row
