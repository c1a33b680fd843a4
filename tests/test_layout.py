"""The tests mirror the package: one test module per package module or per package folder.

``tests/test_<unit>.py`` tests a top-level module or folder of ``slimsam_edge`` (``test_bundle.py``
-> ``bundle.py``, ``test_compress.py`` -> ``compress/``); ``tests/<folder>/test_<name>.py`` tests
``slimsam_edge/<folder>/<name>.py`` (or its sub-folder). Only the checks that span the whole package
(:data:`PACKAGE_WIDE`) stand outside that rule, so a newcomer finds a module's tests by its name.
"""

from __future__ import annotations

from pathlib import Path

TESTS = Path(__file__).resolve().parent
PACKAGE = TESTS.parent / "slimsam_edge"
#: tests about the package as a whole, not one module
PACKAGE_WIDE = {"test_layers.py", "test_layout.py"}
#: folders of tests about promises that span the package (issue 20: tests/hardening/, docs/reliability.md)
PACKAGE_WIDE_FOLDERS = {"hardening"}


def _tested(test: Path) -> Path:
    rel = test.relative_to(TESTS)
    name = rel.name[len("test_"):-len(".py")]
    return PACKAGE.joinpath(*rel.parts[:-1], name)


def test_every_test_module_names_a_package_module_or_folder():
    tests = [p for p in TESTS.rglob("test_*.py")
             if p.name not in PACKAGE_WIDE and p.relative_to(TESTS).parts[0] not in PACKAGE_WIDE_FOLDERS]
    orphans = [str(t.relative_to(TESTS)) for t in tests
               if not (_tested(t).with_suffix(".py").is_file() or _tested(t).is_dir())]
    assert tests and not orphans, (f"test modules that name no package module or folder: {orphans}; "
                                   "name them after what they test (tests/<folder>/test_<module>.py)")


def test_test_module_names_are_unique():
    """pytest imports test modules by file name (no __init__.py), so two of one name would clash."""
    names = [p.name for p in TESTS.rglob("test_*.py")]
    assert len(names) == len(set(names)), sorted(n for n in names if names.count(n) > 1)
