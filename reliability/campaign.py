"""Reliability campaign: odd inputs, bad arguments and reruns, each classified by what it gave.

    uv run python -m reliability.campaign [--only AREA ...] [--write RELIABILITY.md] [--keep DIR]

Every case makes its own input in a fresh temporary folder (nothing is downloaded), runs one
library call in this process or one CLI in a subprocess, and is classified:

* ``clear error``   -- refused as expected: one line naming the input and the problem,
  with the expected exit status (CLIs: 2 bad input, 1 failed run) or a ``ValueError``
  (``DataError`` for files) naming it (library calls);
* ``correct``       -- an odd but valid input gave the right result (checked);
* ``preserved``     -- a failing or repeated run left the finished files byte-identical;
* ``traceback``     -- a Python traceback or an unexpected exception type;
* ``silent wrong``  -- ran (exit 0 / no exception) but the result is wrong;
* ``confusing``     -- refused, but the message does not name the input or misleads;
* ``wrong exit``    -- a one-line error with the wrong exit status;
* ``damaged``       -- finished files changed or disappeared.

Cases are :class:`Case` records collected from the modules in :data:`CASE_MODULES`; each such
module has a ``CASES`` list. To add rows, write a module with ``CASES = [Case(...), ...]``
and list it there. ``--write`` puts the table, the counts, the command, the machine and the
date into a markdown file (RELIABILITY.md at the repository root), between its campaign
markers: text written by hand around them stays.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import hashlib
import importlib
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

#: Modules whose ``CASES`` lists make up the campaign, in table order.
CASE_MODULES = ("reliability.cases_inputs", "reliability.cases_sweep")

#: The classes a case can end in, good ones first (the order of the counts).
OUTCOMES = ("clear error", "correct", "preserved", "traceback", "silent wrong", "confusing", "wrong exit", "damaged")
GOOD = {"clear error", "correct", "preserved"}

ROOT = Path(__file__).resolve().parents[1]


@dataclasses.dataclass(frozen=True)
class Case:
    """One campaign case.

    Attributes:
      id: short unique name (``area/what``).
      area: what it exercises (``images``, ``meshes``, ``occupancy``, ``spectrum``, ...).
      what: the input, in a few words, for the table.
      run: ``run(tmp: Path) -> Outcome``: makes its input under ``tmp`` and classifies what happened
        (usually through :func:`expect_error`, :func:`expect_ok` or :func:`cli`).
    """

    id: str
    area: str
    what: str
    run: Callable[[Path], Outcome]


@dataclasses.dataclass(frozen=True)
class Outcome:
    """What a case gave: one of :data:`OUTCOMES` and a one-line detail (the message, or why)."""

    kind: str
    detail: str


def one_line(text: str, limit: int = 160) -> str:
    """``text`` on one line, cut to ``limit`` characters, ``|`` escaped for markdown tables."""
    s = " ".join(str(text).split()).replace("|", "\\|")
    return s if len(s) <= limit else s[: limit - 3] + "..."


#: Phrases that make a message confusing whatever else it says (internals leaking out).
CONFUSING = ("No module named", "charset_normalizer", "unknown error", "plugin pillow", "ZeroDivisionError",
             "did not converge", "UnicodeEncodeError")


def expect_error(call: Callable[[], object], names: str | os.PathLike | None, *, also: str | None = None) -> Outcome:
    """A library call that must refuse its input: a ``ValueError`` (``DataError`` for files)
    whose one-line message contains ``names`` (the file or argument) and ``also`` (a word of the
    problem) is a clear error; anything else says what went wrong."""
    try:
        value = call()
    except ValueError as exc:
        msg = str(exc)
        if "\n" in msg.strip():
            return Outcome("confusing", "multi-line message: " + one_line(msg))
        if any(c.lower() in msg.lower() for c in CONFUSING):
            return Outcome("confusing", one_line(msg))
        if names is not None and str(names) not in msg:
            return Outcome("confusing", "does not name the input: " + one_line(msg))
        if also is not None and also.lower() not in msg.lower():
            return Outcome("confusing", f"does not say {also!r}: " + one_line(msg))
        return Outcome("clear error", one_line(msg))
    except Exception as exc:  # noqa: BLE001 - classifying exactly this
        return Outcome("traceback", f"{type(exc).__name__}: " + one_line(str(exc)))
    return Outcome("silent wrong", "accepted: " + one_line(repr(value)[:120]))


def expect_ok(call: Callable[[], object], check: Callable[[object], str | None]) -> Outcome:
    """A library call on an odd but valid input: ``check(result)`` returns None when the result
    is right, else what is wrong."""
    try:
        value = call()
    except Exception as exc:  # noqa: BLE001
        kind = "confusing" if isinstance(exc, ValueError) else "traceback"
        return Outcome(kind, f"refused a valid input: {type(exc).__name__}: " + one_line(str(exc)))
    problem = check(value)
    return Outcome("silent wrong", problem) if problem else Outcome("correct", "as documented")


@dataclasses.dataclass(frozen=True)
class Ran:
    """A finished subprocess: exit status and its output."""

    rc: int
    out: str
    err: str
    seconds: float


def run_cli(module: str, argv: list[str], timeout: float = 300) -> Ran:
    """``python -m module *argv`` from the repository root, in this interpreter."""
    t0 = time.perf_counter()
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    try:
        p = subprocess.run([sys.executable, "-m", module, *argv], cwd=ROOT, capture_output=True, text=True,
                           timeout=timeout, env=env)
    except subprocess.TimeoutExpired:
        return Ran(124, "", f"timed out after {timeout:.0f} s", time.perf_counter() - t0)
    return Ran(p.returncode, p.stdout, p.stderr, time.perf_counter() - t0)


def cli(module: str, argv: list[str], *, code: int, names: str | None, also: str | None = None,
        timeout: float = 300) -> Outcome:
    """Run a CLI that must fail with exit status ``code`` and an ``error:`` line naming
    ``names`` (and saying ``also``), without a traceback."""
    r = run_cli(module, argv, timeout)
    return classify_error_run(r, code=code, names=names, also=also)


def classify_error_run(r: Ran, *, code: int, names: str | None, also: str | None = None) -> Outcome:
    """Classify a finished CLI run that should have failed (see :func:`cli`)."""
    text = r.out + r.err
    if "Traceback (most recent call last)" in text:
        last = [ln for ln in r.err.strip().splitlines() if ln.strip()][-1:] or [""]
        return Outcome("traceback", f"exit {r.rc}: " + one_line(last[0]))
    errors = [ln for ln in r.err.splitlines() if ln.startswith("error:")]
    if r.rc == 0:
        return Outcome("silent wrong", "exit 0" + (": " + one_line(errors[0]) if errors else ", no error line"))
    if not errors:
        tail = [ln for ln in r.err.strip().splitlines() if ln.strip()][-1:] or ["(no output)"]
        return Outcome("confusing", f"exit {r.rc}, no 'error:' line: " + one_line(tail[0]))
    line = next((ln for ln in errors if names is None or names in ln), errors[0])
    if names is not None and names not in line:
        return Outcome("confusing", f"exit {r.rc}, does not name {names!r}: " + one_line(line))
    if any(c.lower() in line.lower() for c in CONFUSING):
        return Outcome("confusing", f"exit {r.rc}: " + one_line(line))
    if also is not None and also.lower() not in line.lower():
        return Outcome("confusing", f"exit {r.rc}, does not say {also!r}: " + one_line(line))
    if r.rc != code:
        return Outcome("wrong exit", f"exit {r.rc} (want {code}): " + one_line(line))
    return Outcome("clear error", f"exit {r.rc}: " + one_line(line))


def digests(root: Path, skip: tuple[str, ...] = ()) -> dict[str, str]:
    """SHA-256 of every file under ``root`` (relative path -> hex), leaving out paths under ``skip``."""
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file() and p.relative_to(root).parts[0] not in skip}


def collect(only: list[str] | None = None) -> list[Case]:
    cases: list[Case] = []
    for name in CASE_MODULES:
        cases += list(importlib.import_module(name).CASES)
    ids = [c.id for c in cases]
    dup = {i for i in ids if ids.count(i) > 1}
    if dup:
        raise SystemExit(f"error: duplicate case ids: {', '.join(sorted(dup))}")
    return [c for c in cases if not only or c.area in only]


def run_cases(cases: list[Case], keep: Path | None = None, log=print) -> list[tuple[Case, Outcome, float]]:
    rows = []
    for case in cases:
        tmp = Path(tempfile.mkdtemp(prefix="ntkgrid-campaign-"))
        t0 = time.perf_counter()
        try:
            outcome = case.run(tmp)
        except Exception as exc:  # noqa: BLE001 - a broken case must not stop the campaign
            outcome = Outcome("traceback", f"the case itself failed: {type(exc).__name__}: {one_line(str(exc))}")
        dt = time.perf_counter() - t0
        if keep is not None:
            shutil.copytree(tmp, keep / case.id.replace("/", "_"), symlinks=True, dirs_exist_ok=True)
        shutil.rmtree(tmp, ignore_errors=True)
        rows.append((case, outcome, dt))
        log(f"{outcome.kind:13s} {case.id:40s} {dt:6.1f} s  {outcome.detail[:110]}")
    return rows


def counts(rows) -> dict[str, int]:
    c = {k: 0 for k in OUTCOMES}
    for _, o, _ in rows:
        c[o.kind] = c.get(o.kind, 0) + 1
    return c


def table(rows) -> str:
    """The markdown table of ``rows``; the cases' temporary folders print as ``<tmp>``."""
    import re

    lines = ["| # | case | area | input | outcome | what it gave |", "|---|---|---|---|---|---|"]
    for i, (case, o, _) in enumerate(rows, 1):
        detail = re.sub(r"/\S*?ntkgrid-campaign-[^/\s]+", "<tmp>", o.detail)
        lines.append(f"| {i} | `{case.id}` | {case.area} | {one_line(case.what, 90)} | **{o.kind}** | "
                     f"{one_line(detail)} |")
    return "\n".join(lines)


BEGIN, END = "<!-- campaign:begin (written by reliability/campaign.py) -->", "<!-- campaign:end -->"


def write_report(path: Path, text: str) -> None:
    """Put ``text`` between the campaign markers of ``path`` (keeping what is written around
    them by hand), or write a new file holding only it."""
    block = f"{BEGIN}\n{text}\n{END}\n"
    old = path.read_text() if path.is_file() else ""
    if BEGIN in old and END in old:
        head, rest = old.split(BEGIN, 1)
        tail = rest.split(END, 1)[1].lstrip("\n")
        path.write_text(head + block + ("\n" + tail if tail else ""))
    else:
        path.write_text("# Reliability campaign\n\n" + block)


NOT_COVERED = [
    "Kills, a full disk and interrupted writes: resume exactness is covered by the test suite "
    "(tests/test_training_runfolder.py, tests/test_sweep_*.py), not replayed here.",
    "A read-only filesystem: the campaign usually runs as root, for whom permission bits do not stop writes; "
    "`--out` on a read-only filesystem is tested by tests/test_occupancy.py (simulated); the sweep's case "
    "`sweep/out-read-only` uses /sys, which refuses new folders even to root.",
    "Real-world files: ImageNet's CMYK JPEGs with embedded ICC profiles, camera JPEGs, scanner TIFFs and "
    "downloaded Stanford meshes; the campaign makes its own small stand-ins with Pillow, tifffile and trimesh.",
    "Accelerators: everything runs on the CPU; GPU-only paths (device eigensolvers, batched training "
    "across devices) are not exercised.",
    "Long or paper-sized runs: every run is a few epochs of tiny networks; numerical quality is not judged.",
    "Concurrency: two processes writing the same `--out` at once.",
]


def markdown(rows, command: str, seconds: float, note: str = "") -> str:
    c = counts(rows)
    n = len(rows)
    good = sum(c[k] for k in GOOD)
    machine = f"{platform.machine()}, {os.cpu_count()} CPU cores, {platform.system()} {platform.release()}"
    date = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    out = [
        "Odd inputs, bad arguments and reruns, each generated by the campaign itself and classified by what "
        "it gave. Rerun it after a change:",
        "",
        f"    {command}",
        "",
        f"Last run: {date}, {machine}{f' ({note})' if note else ''}, Python "
        f"{platform.python_version()}; {n} cases in {seconds:.0f} s.",
        "",
        "## Counts",
        "",
        "| outcome | cases |",
        "|---|---|",
        *[f"| {k} | {v} |" for k, v in c.items()],
        f"| **total** | {n} ({good} good: clear error, correct or preserved) |",
        "",
        "Classes: *clear error* = refused in one line naming the input and the problem, exit 2 for bad input "
        "and 1 for a failed run (library: a `ValueError`/`DataError` naming it); *correct* = an odd but valid "
        "input gave the documented result (checked); *preserved* = a failed or repeated run left finished "
        "files byte-identical; *traceback*, *silent wrong* (exit 0 or no exception, wrong result), *confusing* "
        "(message does not name the input or misleads), *wrong exit*, *damaged* (finished files changed).",
        "",
        "## Cases",
        "",
        table(rows),
        "",
        "## Not covered",
        "",
        *[f"- {x}" for x in NOT_COVERED],
        "",
    ]
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m reliability.campaign", description=__doc__.split("\n\n")[0])
    ap.add_argument("--only", nargs="+", default=None, metavar="AREA", help="run only these areas")
    ap.add_argument("--write", type=Path, default=None, help="write the markdown report here (e.g. RELIABILITY.md)")
    ap.add_argument("--keep", type=Path, default=None, help="copy every case's temporary folder here")
    ap.add_argument("--note", default="", help="a word on the machine for the report (e.g. 'shared, loaded')")
    args = ap.parse_args(argv)
    cases = collect(args.only)
    if not cases:
        print(f"error: --only {' '.join(args.only)}: no such area", file=sys.stderr)
        return 2
    t0 = time.perf_counter()
    rows = run_cases(cases, args.keep)
    seconds = time.perf_counter() - t0
    c = counts(rows)
    print(table(rows))
    print("counts: " + ", ".join(f"{k} {v}" for k, v in c.items() if v) + f" (total {len(rows)}, {seconds:.0f} s)")
    if args.write is not None:
        command = "uv run python -m reliability.campaign --write RELIABILITY.md"
        if args.only:
            command += " --only " + " ".join(args.only)
        write_report(args.write, markdown(rows, command, seconds, args.note))
        print(f"wrote {args.write}")
    return 0 if all(o.kind in GOOD for _, o, _ in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
