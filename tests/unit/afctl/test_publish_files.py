"""`afctl templates publish --file GUEST=LOCAL` and the examples' files/ directories."""

from __future__ import annotations

from pathlib import Path

import pytest
import typer

from afctl.__main__ import _read_files
from afctl.examples import catalogue


def test_file_options_become_guest_paths(tmp_path: Path) -> None:
    (tmp_path / "w.txt").write_bytes(b"words")
    assert _read_files([f"/data/words.txt={tmp_path / 'w.txt'}"]) == {"/data/words.txt": b"words"}


@pytest.mark.parametrize("spec", ["/data/x", "=local", "/data/x="])
def test_a_malformed_file_option_is_a_bad_parameter(spec: str) -> None:
    with pytest.raises(typer.BadParameter, match="GUEST_PATH=LOCAL_PATH"):
        _read_files([spec])


def test_a_guest_path_given_twice_is_a_bad_parameter(tmp_path: Path) -> None:
    (tmp_path / "a").write_bytes(b"")
    with pytest.raises(typer.BadParameter, match="twice"):
        _read_files([f"/data/a={tmp_path / 'a'}", f"/data/a={tmp_path / 'a'}"])


def test_a_missing_local_file_is_an_os_error() -> None:  # afctl's exit code 4
    with pytest.raises(OSError):
        _read_files(["/data/a=/nonexistent/file"])


def test_the_spell_check_example_ships_its_word_list() -> None:
    (example,) = [t for t in catalogue("agents") if t.name == "spell-check"]
    files = example.files()
    assert list(files) == ["/data/words.txt"] and b"question\n" in files["/data/words.txt"]
    # The Rust and WAT conformance agents ship the read-only file their checks read and try to change.
    shipping = {t.name: list(t.files()) for t in catalogue("agents") if t.files()}
    assert shipping == {
        "spell-check": ["/data/words.txt"],
        "fs-conformance-rust": ["/data/conformance.txt"],
        "fs-conformance-wat": ["/data/conformance.txt"],
    }
