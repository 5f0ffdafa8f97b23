"""Tests for reliability.campaign: the classifier of outcomes and the case list (no case is run here)."""

from __future__ import annotations

import pytest

from reliability import campaign as C


@pytest.mark.parametrize("rc, err, code, kind", [
    (2, "error: --seed must be >= 0, got -1\n", 2, "clear error"),
    (1, "error: --seed must be >= 0, got -1\n", 2, "wrong exit"),
    (0, "", 2, "silent wrong"),
    (1, "Traceback (most recent call last):\n  File x\nZeroDivisionError: division by zero\n", 2, "traceback"),
    (2, "error: something else\n", 2, "confusing"),
    (1, "error: --seed: No module named 'charset_normalizer'\n", 1, "confusing"),
])
def test_classify_error_run(rc, err, code, kind):
    assert C.classify_error_run(C.Ran(rc, "", err, 0.0), code=code, names="--seed").kind == kind


def test_expect_error_and_expect_ok():
    def refuse(msg, exc=ValueError):
        def call():
            raise exc(msg)
        return call

    assert C.expect_error(refuse("/x.png: empty file"), "/x.png").kind == "clear error"
    assert C.expect_error(refuse("empty file"), "/x.png").kind == "confusing"
    assert C.expect_error(refuse("/x.png: a\nb"), "/x.png").kind == "confusing"
    assert C.expect_error(refuse("boom", ZeroDivisionError), "/x.png").kind == "traceback"
    assert C.expect_error(lambda: 3, "/x.png").kind == "silent wrong"
    assert C.expect_ok(lambda: 3, lambda v: None).kind == "correct"
    assert C.expect_ok(lambda: 3, lambda v: "off by one").kind == "silent wrong"


def test_cases_have_unique_ids_and_known_areas():
    cases = C.collect()
    assert len({c.id for c in cases}) == len(cases) > 50
    assert {c.area for c in cases} >= {"images", "meshes", "occupancy", "spectrum"}
    assert all(c.id.startswith(c.area + "/") for c in cases)


def test_report_keeps_hand_written_text_around_the_markers(tmp_path):
    p = tmp_path / "R.md"
    p.write_text(f"# Title\n\nintro\n\n{C.BEGIN}\nold table\n{C.END}\n\n## Notes\n\nkept\n")
    C.write_report(p, "new table")
    text = p.read_text()
    assert "new table" in text and "old table" not in text
    assert text.startswith("# Title\n\nintro\n") and text.rstrip().endswith("kept")
