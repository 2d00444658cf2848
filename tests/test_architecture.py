"""The package's shape, checked on every test run: each package of batchmix imports only the layers
below it (import-linter, with the contract in pyproject.toml's [tool.importlinter]), no two modules
import each other even through others or only for type checking (grimp, import-linter's graph),
and the top of src/batchmix stays short enough to read at a glance."""

import subprocess
import sys
from pathlib import Path

import grimp

ROOT = Path(__file__).resolve().parents[1]
OURS = ("batchmix", "hydra_plugins.batchmix_optuna_sweeper")  # hydra_plugins is shared with other installed plugins


def test_each_package_imports_only_the_layers_below_it():
    lint = Path(sys.executable).parent / "lint-imports"
    out = subprocess.run([str(lint), "--no-logo", "--no-cache", "pyproject.toml"], cwd=ROOT, capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr


def test_no_import_cycle():
    graph = grimp.build_graph("batchmix", "hydra_plugins", cache_dir=None)  # TYPE_CHECKING and in-function imports too
    modules = {m for m in graph.modules if any(m == p or m.startswith(p + ".") for p in OURS)}
    cycles = set()
    for module in sorted(modules):
        for imported in graph.find_modules_directly_imported_by(module) & modules:
            back = graph.find_shortest_chain(importer=imported, imported=module)
            if back:
                cycle = (module, *back)  # module -> imported -> ... -> module
                start = cycle.index(min(cycle[:-1]))
                cycles.add(" -> ".join(cycle[start:-1] + cycle[:start + 1]))
    assert not cycles, "\n".join(sorted(cycles))


def test_the_top_of_batchmix_stays_short():
    entries = sorted(p.name for p in (ROOT / "src" / "batchmix").iterdir() if p.name != "__pycache__")
    assert len(entries) <= 10, entries


def test_every_file_the_architecture_page_names_exists():
    """The change recipes promise to name every file they touch: a moved or renamed file must move there too."""
    import re

    text = (ROOT / "docs" / "architecture.md").read_text()
    named = set(re.findall(r"`((?:src|tests|conf|docs)/[\w/<>.-]+\.(?:py|yaml|md))`", text))
    assert len(named) >= 15, named  # the recipes' files are found at all
    missing = sorted(p for p in named if "<" not in p and not (ROOT / p).exists())
    assert not missing, missing
    for package in ("run", "report", "eval", "losses", "models", "data", "mixing", "config", "core"):
        assert f"| `{package}/` |" in text, f"the layer table lacks {package}/"
