"""The `batchmix` console script: one entry point, each subcommand's bad input answered in one line."""

from __future__ import annotations

import sys

import pytest

from batchmix.run.cli import SUBCOMMANDS, main


def test_help_lists_every_subcommand(capsys):
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    assert all(f"  {name} " in out for name in SUBCOMMANDS)


def test_an_unknown_subcommand_is_one_line(capsys):
    assert main(["trian"]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "'trian'" in err and "train" in err


def test_argv_subcommands_return_their_code(tmp_path, capsys):
    assert main(["export", str(tmp_path / "nope"), "--to", str(tmp_path / "st")]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "does not exist" in err and not (tmp_path / "st").exists()
    assert main(["report", "--from-results", str(tmp_path / "nowhere"), "--markdown", str(tmp_path / "R.md")]) == 2


def test_hydra_subcommands_take_overrides(monkeypatch, capsys, tmp_path):
    monkeypatch.setattr(sys, "argv", sys.argv[:1])
    with pytest.raises(SystemExit) as stop:  # a Hydra main exits itself; the pre-flight refuses before any import
        main(["train", "ratio.mono=1.5", f"hydra.run.dir={tmp_path / 'run'}"])
    assert stop.value.code == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "ratio" in err and "1.5" in err
