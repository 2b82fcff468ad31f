"""`aims-agent demo --out DIR` replaces only a folder an earlier demo run created (its marker file and
nothing else) or an empty one; any other folder is refused with exit 2 and left as it was."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from agent.demo import MARKER, prepare_output
from config.errors import InputError


def _tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_a_folder_of_someone_elses_files_is_refused_and_untouched(tmp_path: Path) -> None:
    mine = tmp_path / "thesis"
    (mine / "chapters").mkdir(parents=True)
    (mine / "chapters" / "one.tex").write_text("years of work")
    (mine / "config.yaml").write_text("not the demo's")
    before = _tree(mine)
    r = subprocess.run([sys.executable, "-m", "agent.cli", "demo", "--out", str(mine)], capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 2, r.stdout[-1000:]
    assert "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert "not created by `aims-agent demo`" in r.stderr
    assert _tree(mine) == before


def test_the_default_folder_is_protected_in_the_same_way(tmp_path: Path) -> None:
    default = tmp_path / "aims-demo"
    default.mkdir()
    (default / "notes.md").write_text("mine")
    r = subprocess.run([sys.executable, "-m", "agent.cli", "demo"], cwd=tmp_path, capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 2 and "aims-demo" in r.stderr, r.stderr
    assert (default / "notes.md").read_text() == "mine"


def test_a_file_added_to_a_demo_folder_is_never_deleted(tmp_path: Path) -> None:
    out = prepare_output(tmp_path / "demo")
    (out / "state.db").write_text("demo state")
    (out / "tickets").mkdir()
    (out / "my-analysis.ipynb").write_text("{}")
    with pytest.raises(InputError, match=r"my-analysis\.ipynb"):
        prepare_output(out)
    assert (out / "my-analysis.ipynb").exists() and (out / "state.db").exists()


def test_the_demos_own_folder_and_an_empty_one_are_replaced(tmp_path: Path) -> None:
    out = prepare_output(tmp_path / "demo")
    assert (out / MARKER).is_file()
    (out / "tickets").mkdir()
    (out / "tickets" / "old.md").write_text("stale ticket")
    (out / "state.db").write_text("stale state")
    (out / "state.db-journal").write_text("stale journal")
    again = prepare_output(out)
    assert sorted(p.name for p in again.iterdir()) == [MARKER]
    empty = tmp_path / "empty"
    empty.mkdir()
    assert sorted(p.name for p in prepare_output(empty).iterdir()) == [MARKER]


def test_files_symlinks_and_unwritable_places_are_refused(tmp_path: Path) -> None:
    a_file = tmp_path / "a-file"
    a_file.write_text("x")
    with pytest.raises(InputError, match="not a folder"):
        prepare_output(a_file)
    target = prepare_output(tmp_path / "real-demo")
    link = tmp_path / "link"
    link.symlink_to(target)
    with pytest.raises(InputError, match="not a folder"):
        prepare_output(link)
    with pytest.raises(InputError, match="--out"):
        prepare_output(a_file / "below-a-file")
