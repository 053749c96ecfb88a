"""capkit's import layers, computed from the code: every module-level ``from capkit import x``, ``from capkit.x
import ...``, ``import capkit.x`` and ``from .x import ...`` of ``capkit/*.py`` and ``capkit/sample/*.py``.

    python bench/layers.py            # a table: layer, module, lines, the capkit modules it imports
    python bench/layers.py --docs     # write that table, and each module's line count, into docs/architecture.md

A module's layer is the length of its longest import chain (0: it imports no capkit module); a cycle is an error.
Imports inside functions (lazy ones) are left out, as they run later than the module's own, and so are those under
``if TYPE_CHECKING:``, which name types for annotations and never run.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1] / "capkit"


def module_name(path: Path) -> str:
    rel = path.relative_to(ROOT).with_suffix("")
    return "sample (package)" if rel.as_posix() == "sample/__init__" else rel.as_posix()


def imports(path: Path) -> set[str]:
    """The capkit modules ``path`` imports at module level."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    here = path.relative_to(ROOT).parent.as_posix()
    found = set()
    for node in tree.body:
        if isinstance(node, ast.ImportFrom):
            if node.level:  # from .x import y
                base = here if here != "." else ""
                mod = "/".join(p for p in (base, (node.module or "").replace(".", "/")) if p)
                found |= {mod} if node.module else {f"{base}/{a.name}".lstrip("/") for a in node.names}
            elif node.module == "capkit":
                found |= {a.name for a in node.names}
            elif node.module and node.module.startswith("capkit."):
                found.add(node.module[len("capkit."):].replace(".", "/"))
        elif isinstance(node, ast.Import):
            found |= {a.name[len("capkit."):].replace(".", "/") for a in node.names if a.name.startswith("capkit.")}
    names = {module_name(p) for p in ROOT.rglob("*.py")}
    return {m if m in names else ("sample (package)" if m == "sample" else m) for m in found} - {module_name(path)}


def layers() -> list[tuple[int, str, int, list[str]]]:
    files = {module_name(p): p for p in sorted(ROOT.rglob("*.py")) if p.name != "__main__.py"}
    deps = {m: sorted(d for d in imports(p) if d in files) for m, p in files.items()}
    depth: dict[str, int] = {}

    def layer(m, seen=()):
        if m in seen:
            raise SystemExit(f"import cycle: {' -> '.join(seen + (m,))}")
        if m not in depth:
            depth[m] = 1 + max((layer(d, seen + (m,)) for d in deps[m]), default=-1)
        return depth[m]

    rows = [(layer(m), m, len(files[m].read_text(encoding="utf-8").splitlines()), deps[m]) for m in files]
    return sorted(rows)


def table(rows) -> str:
    lines = [f"{'layer':<6} {'module':<18} {'lines':>5}  imports from capkit"]
    lines += [f"{layer:<6} {m:<18} {n:>5}  {'  '.join(deps) or '-'}" for layer, m, n, deps in rows]
    return "\n".join(lines) + "\n"


def write_docs(rows, doc: Path = ROOT.parent / "docs" / "architecture.md") -> None:
    """Replace docs/architecture.md's layer listing with :func:`table` and the line counts of its module table
    (rows ``| `capkit/x.py` | lines | job |``) with the files'."""
    text = doc.read_text(encoding="utf-8")
    start = text.index("```\nlayer  module") + 4
    text = text[:start] + table(rows) + text[text.index("```", start):]
    out = []
    for line in text.split("\n"):
        cells = line.split(" | ", 2)
        if line.startswith("| `capkit/") and "`, `" not in cells[0]:
            n = len((ROOT.parent / cells[0].strip("| `")).read_text(encoding="utf-8").splitlines())
            line = f"{cells[0]} | {n} | {cells[2]}"
        out.append(line)
    doc.write_text("\n".join(out), encoding="utf-8")


def main() -> None:
    rows = layers()
    if "--docs" in sys.argv[1:]:
        write_docs(rows)
    print(table(rows), end="")
    big = max(rows, key=lambda r: r[2])
    print(f"\n{len(rows)} modules; the largest: {big[1]} ({big[2]} lines); most capkit imports: "
          f"{max(rows, key=lambda r: len(r[3]))[1]} ({max(len(r[3]) for r in rows)})", file=sys.stderr)


if __name__ == "__main__":
    main()
