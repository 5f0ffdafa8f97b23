"""ntkgrid.files: strict JSON, atomic writes that leave no temporary file, readers that name
the file, safe names, number formatting and config diffs."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

from ntkgrid import files


def test_to_jsonable_numbers_arrays_paths_and_non_finite():
    obj = {1: np.float32(0.5), "a": np.arange(3), "t": (np.int64(2), Path("x/y")), "nan": float("nan"),
           "inf": np.array([1.0, np.inf]), "s": "text", "z": np.array(7)}
    assert files.to_jsonable(obj) == {"1": 0.5, "a": [0, 1, 2], "t": [2, "x/y"], "nan": None, "inf": [1.0, None],
                                      "s": "text", "z": 7}


def test_writes_are_atomic_strict_and_leave_no_temporary(tmp_path):
    p = files.write_json(tmp_path / "deep" / "a.json", {"x": float("inf"), "y": [np.float64(1.5)]})
    assert p.read_text() == '{\n "x": null,\n "y": [\n  1.5\n ]\n}\n'
    files.write_jsonl(tmp_path / "b.jsonl", [{"e": 1}, {"e": float("nan")}])
    assert files.read_jsonl(tmp_path / "b.jsonl") == [{"e": 1}, {"e": None}]
    files.write_text(tmp_path / "deep" / "a.json", "replaced")
    assert (tmp_path / "deep" / "a.json").read_text() == "replaced"
    assert sorted(os.listdir(tmp_path / "deep")) == ["a.json"]  # no .a.json.<pid>.tmp left


def test_readers_name_the_file_and_the_problem(tmp_path):
    with pytest.raises(ValueError, match=r"missing\.json: no such file"):
        files.read_json(tmp_path / "missing.json")
    (tmp_path / "bad.json").write_text("{oops")
    with pytest.raises(KeyError, match=r"bad\.json: cannot be read as JSON"):
        files.read_json(tmp_path / "bad.json", error=KeyError)
    assert files.read_jsonl(tmp_path / "none.jsonl") == []
    (tmp_path / "c.jsonl").write_text('{"a": 1}\n\n{"a": \n')
    with pytest.raises(ValueError, match=r"c\.jsonl:3: cannot be read as JSON"):
        files.read_jsonl(tmp_path / "c.jsonl")


def test_safe_name_fmt_and_markdown_table():
    assert files.safe_name("n01 cat/dog.JPEG") == "n01_cat_dog.JPEG"
    assert files.safe_name("..__..", "image") == "image"
    assert [files.fmt(v) for v in (None, float("nan"), 3.14159, 0.001, 123456.0, 0.0, 7, "x")] == \
        ["-", "-", "3.14", "1.00e-03", "1.23e+05", "0.00", "7", "x"]
    assert files.fmt(np.float32(2.5), 3) == "2.500"
    assert files.markdown_table(["a", "b"], [["x", 1.0], ["y", None]]) == \
        "| a | b |\n|---|---|\n| x | 1.00 |\n| y | - |\n"


def test_diff_lists_each_differing_leaf():
    stored = {"lr": 1.0, "enc": {"kind": "multigrid", "levels": 4}, "old": 1}
    now = {"lr": 2.0, "enc": {"kind": "multigrid", "levels": 8}, "new": True}
    assert files.diff(stored, now) == ["enc.levels: stored 4, now 8", "lr: stored 1.0, now 2.0",
                                       "new: stored '<missing>', now True", "old: stored 1, now '<missing>'"]
    assert files.diff({"x": "a" * 100}, {"x": "b" * 100}) == ["x differs"]
    assert files.diff(stored, json.loads(json.dumps(stored))) == []
