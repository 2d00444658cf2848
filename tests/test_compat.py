"""The adapters around other libraries' private names (batchmix/core/compat.py): each reads what it should
on the installed versions, and fails with one line naming the version when its name is gone; and
nothing else in src/ reads a private name of another library."""

from __future__ import annotations

import ast
from importlib.metadata import version
from pathlib import Path

import pytest

from batchmix.core import compat
from batchmix.core.errors import BatchmixError
from scale_helpers import tiny_encoder

SRC = Path(__file__).resolve().parents[1] / "src"
OURS = ("batchmix", "hydra_plugins.batchmix_optuna_sweeper")


@pytest.mark.parametrize("impl", ["eager", "sdpa"])
def test_attention_implementation_reads_what_the_public_switch_set(impl):
    enc = tiny_encoder(trunk_cache="off").query_encoder
    enc.set_attn_implementation(impl)
    assert compat.attention_implementation(enc.config) == impl


def test_has_indices_mapping_tells_a_reordered_dataset_from_a_flat_one():
    import datasets

    flat = datasets.Dataset.from_dict({"x": list(range(6))})
    assert not compat.has_indices_mapping(flat)
    assert compat.has_indices_mapping(flat.select([4, 1]))
    assert compat.has_indices_mapping(flat.shuffle(seed=0))
    assert not compat.has_indices_mapping(flat.select([4, 1]).flatten_indices())


@pytest.mark.parametrize("adapter, package", [(compat.attention_implementation, "transformers"),
                                              (compat.has_indices_mapping, "datasets")])
def test_a_vanished_private_name_is_one_line_naming_the_version(adapter, package):
    class Renamed:  # what a release that renames the attribute leaves
        pass

    with pytest.raises(BatchmixError) as err:
        adapter(Renamed())
    message = str(err.value)
    assert "\n" not in message and message.startswith(f"{package} {version(package)} no longer has Renamed.")
    assert "requirements/lock.txt" in message


def _private(name: str) -> bool:
    return name.startswith("_") and not name.startswith("__")


def test_no_private_name_of_a_dependency_outside_the_adapters():
    """Read from the syntax, not by eye: an `x._name` whose `_name` batchmix does not define itself
    (or a `super()._name`: an override of another library's private method), a private name in a
    `hasattr`/`getattr`, or an import of a private module or name of another package, anywhere in src/ but compat.py."""
    trees = {path: ast.parse(path.read_text(encoding="utf-8")) for path in sorted(SRC.rglob("*.py"))}
    own = set()  # the private names batchmix defines: functions, classes, attributes it assigns
    for tree in trees.values():
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                own.add(node.name)
            elif isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store):
                own.add(node.attr)
            elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
                own.add(node.id)
            elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
                own.add(node.target.id)
            elif (isinstance(node, ast.Call) and ast.unparse(node.func) in ("setattr", "object.__setattr__")
                  and isinstance(node.args[1], ast.Constant)):
                own.add(node.args[1].value)
    found = []
    for path, tree in trees.items():
        if path.name == "compat.py":
            continue
        for node in ast.walk(tree):
            overrides = isinstance(node, ast.Attribute) and ast.unparse(node.value) == "super()"  # a library's method
            if isinstance(node, ast.Attribute) and _private(node.attr) and (node.attr not in own or overrides):
                found.append(f"{path.relative_to(SRC)}:{node.lineno}: {ast.unparse(node)}")
            elif (isinstance(node, ast.Call) and ast.unparse(node.func) in ("hasattr", "getattr") and len(node.args) > 1
                  and isinstance(node.args[1], ast.Constant) and _private(str(node.args[1].value))
                  and node.args[1].value not in own):
                found.append(f"{path.relative_to(SRC)}:{node.lineno}: {ast.unparse(node)}")
            elif isinstance(node, (ast.Import, ast.ImportFrom)):
                theirs = isinstance(node, ast.Import) or (node.level == 0 and not node.module.startswith(OURS))
                modules = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module] if theirs else []
                modules = [m for m in modules if not m.startswith(OURS)]
                names = [a.name for a in node.names] if isinstance(node, ast.ImportFrom) and theirs else []
                if any(_private(part) for m in modules for part in m.split(".")) or any(_private(n) for n in names):
                    found.append(f"{path.relative_to(SRC)}:{node.lineno}: {ast.unparse(node)}")
    assert not found, "private names of dependencies outside batchmix/core/compat.py:\n" + "\n".join(found)
