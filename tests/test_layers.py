"""The package's layers only point down (docs/architecture.md, "Layers").

Every module of ``slimsam_edge`` is parsed with :mod:`ast` (nothing is imported, so this needs no
optional dependency); every import it makes -- at module level, inside functions (lazy imports),
under ``TYPE_CHECKING``, in ``from . import x`` form -- is resolved to a package module and
both ends are mapped to a layer. An import from a lower layer into a higher one fails the test,
naming both modules and both layers. Same-layer imports are allowed only inside one unit (a
package folder or a top-level module) or where :data:`SAME_LAYER_ALLOWED` lists them.

A new top-level module or package folder must be placed in :data:`LAYERS` (the second test
fails until it is), so the order is decided when the code is written, not discovered later.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = "slimsam_edge"
ROOT = Path(__file__).resolve().parent.parent / PACKAGE

# Bottom -> top. Each entry: the top-level units (package folders or modules) in one layer.
# The same order, with the reasons, is written in docs/architecture.md ("Layers").
LAYERS: list[tuple[str, ...]] = [
    ("__init__", "errors", "fsutil", "offline", "limits"),  # the package itself: public names resolved lazily, by string
    ("transforms", "assets", "manifest_schema", "safeio"),  # value checks of manifest.json; regular-file / output-path guards, quiet native stderr, finite JSON
    ("data", "devices"),
    ("models",),  # graph_spec is torch-free; batch.py samples prompts with data.prompts
    ("bundle",),
    ("runtimes",),
    ("predictor", "visualize"),
    ("calibration",),  # decoder feeds encode prompts with EdgePredictor
    ("eval",),
    ("apps", "deploy"),  # deploy: reference I/O, verify, on-device builds (torch-free)
    ("exporters", "compress", "reference"),
    ("bench",),
    ("research",),
    ("demo",),
    ("cli",),
    ("__main__",),
]

# Imports between different units of one layer that the order allows (importer unit, imported unit).
SAME_LAYER_ALLOWED = {("reference", "compress"), ("fsutil", "errors"), ("limits", "errors")}


def layer_of(unit: str) -> int:
    for i, names in enumerate(LAYERS):
        if unit in names:
            return i
    raise KeyError(unit)


def unit_of(module: str) -> str:
    """``slimsam_edge.compress.pipeline`` -> ``compress``; ``slimsam_edge`` -> ``__init__``."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def package_modules() -> dict[str, Path]:
    out = {}
    for path in sorted(ROOT.rglob("*.py")):
        rel = path.relative_to(ROOT.parent).with_suffix("")
        parts = list(rel.parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


MODULES = package_modules()


def imports_of(module: str, path: Path) -> list[tuple[int, str]]:
    """``(line, imported package module)`` for every import of ``slimsam_edge`` code in ``path``."""
    is_package = path.name == "__init__.py"
    here = module.split(".") if is_package else module.split(".")[:-1]
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names if a.name.split(".")[0] == PACKAGE]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = here[: len(here) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target.split(".")[0] != PACKAGE:
                continue
            # `from pkg import name`: name is a submodule when one exists, else an attribute of pkg.
            for a in node.names:
                sub = f"{target}.{a.name}"
                found.append((node.lineno, sub if sub in MODULES else target))
    return found


def violations(modules: dict[str, Path] = MODULES) -> list[str]:
    """One line per import in ``modules`` that points up the order (or across one layer, unallowed)."""
    out = []
    for module, path in modules.items():
        src = unit_of(module)
        for line, target in imports_of(module, path):
            dst = unit_of(target)
            if dst == src:
                continue
            ls, ld = layer_of(src), layer_of(dst)
            if ld > ls or (ld == ls and (src, dst) not in SAME_LAYER_ALLOWED):
                where = path.relative_to(ROOT.parent) if path.is_relative_to(ROOT.parent) else path
                out.append(f"{where}:{line}: {module} (layer {ls}: {src}) imports {target} (layer {ld}: {dst}) -- "
                           + ("points up the order" if ld > ls else "same layer, not allowed"))
    return out


def test_every_module_is_placed_in_a_layer():
    unplaced = sorted({unit_of(m) for m in MODULES} - {u for names in LAYERS for u in names})
    assert not unplaced, (f"top-level units with no layer: {unplaced}; add each to LAYERS in "
                          "tests/test_layers.py and to the layer list in docs/architecture.md")


def test_imports_only_point_down():
    found = violations()
    assert not found, "imports that point up the layer order:\n" + "\n".join(found)


def test_the_checker_sees_lazy_relative_and_from_package_imports(tmp_path):
    src = tmp_path / "m.py"
    src.write_text("from .spec import ModelSpec\n"
                   "def f():\n    from ..cli import app\n    from .. import research\n"
                   "    import slimsam_edge.bench.harness\n    from ..errors import UsageError\n")
    found = {t: line for line, t in imports_of("slimsam_edge.models.m", src)}
    assert found == {"slimsam_edge.models.spec": 1, "slimsam_edge.cli.app": 3, "slimsam_edge.research": 4,
                     "slimsam_edge.bench.harness": 5, "slimsam_edge.errors": 6}
    bad = violations({"slimsam_edge.models.m": src})
    assert len(bad) == 3 and all("points up the order" in b for b in bad)
    assert bad[0].endswith(f"m.py:3: slimsam_edge.models.m (layer {layer_of('models')}: models) imports "
                           f"slimsam_edge.cli.app (layer {layer_of('cli')}: cli) -- points up the order")


def test_compress_may_not_import_reference_but_reference_may_import_compress(tmp_path):
    src = tmp_path / "x.py"
    src.write_text("from ..reference.recipe import Recipe\nfrom ..compress.device import tf32\n")
    assert [b.split(" -- ")[1] for b in violations({"slimsam_edge.compress.x": src})] == ["same layer, not allowed"]
    assert violations({"slimsam_edge.reference.x": src}) == []


@pytest.mark.parametrize("unit", [u for names in LAYERS for u in names])
def test_layers_are_named_in_the_docs(unit):
    doc = (ROOT.parent / "docs" / "architecture.md").read_text()
    section = doc.split("## Layers", 1)[-1].split("\n## ", 1)[0]
    assert f"`{unit}`" in section, f"docs/architecture.md's Layers section does not place `{unit}`"
