"""RESULTS.md's tables, generated from the JSON files under ``benchmarks/results/``.

    python -m benchmarks.results [--check] [--results-md PATH] [--results-dir DIR]

RESULTS.md holds prose and generated blocks::

    <!-- generated: KIND FILE [FILE ...] -->
    ... (replaced on every run) ...
    <!-- /generated -->

``KIND`` names the table (:data:`RENDERERS`: ``suite``, ``ntk``, ``ntk_activations``, ``ntk_full``,
``interpolate``, ``train``, ``sweep``, ``sweep_runs``, ``labels``, ``occupancy``) and
``FILE`` a JSON file under the results folder: a benchmark script's own ``--json`` output,
or a suite document of ``python -m benchmarks --json`` (``FILE#NAME`` picks benchmark
``NAME``'s raw figures in it). Every block ends with where the numbers come from: the
suite's recorded machine and load average, or for a script's file its entry in
``results/provenance.json`` (machine, date, load, as recorded when it was measured).
Nothing in a block is typed by hand; ``--check`` exits 1 when RESULTS.md differs from
what the files give (the test suite runs it).

Exit status: 0 written (or up to date), 1 out of date (``--check``), 2 bad input.
"""

from __future__ import annotations

import argparse
import json
import math
import re
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

__all__ = ["RENDERERS", "ResultsError", "main", "render"]

HERE = Path(__file__).resolve().parent
BLOCK = re.compile(r"<!-- generated: (?P<spec>[^>]*?) -->\n.*?<!-- /generated -->", re.S)


class ResultsError(ValueError):
    """A block names an unknown table or a missing or unreadable file."""


def _f(v, digits: int = 2, suffix: str = "") -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "-"
    return f"{v:.{digits}f}{suffix}"


def _g(v, digits: int = 3) -> str:
    """Three significant digits, plain below 1e5, else scientific."""
    if v is None:
        return "-"
    return f"{v:,.0f}" if abs(v) >= 100 and abs(v) < 1e7 else f"{v:.{digits}g}"


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(" --- " for _ in header) + "|"]
    lines += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return "\n".join(lines)


def _load(v) -> str:
    return "-" if not v else f"{v[0]:.1f}"


# ----------------------------------------------------------------------------- tables


def _suite(doc: Mapping) -> str:
    rows = []
    for name, e in doc["benchmarks"].items():
        h = e.get("headline") or {}
        extra = f" (min {_f(h['min'])}x, max {_f(h['max'])}x)" if h.get("min") is not None else ""
        ratio = _f(h.get("ratio"), 2, "x") + extra if e["status"] == "ok" else "-"
        rows.append([name, e["status"] + ("" if e["status"] == "ok" else f": {e.get('error', e.get('reason', ''))}"
                                          .replace("\n", " ")[:120]),
                     ratio, h.get("meaning", "-"), _f(e.get("seconds"), 0)])
    rows += [[name, "not run (the suite was stopped before it)", "-", "-", "-"] for name in doc.get("pending", [])]
    return _table(["benchmark", "status", "headline ratio", "what the ratio is", "seconds"], rows)


def _ntk(doc: Mapping) -> str:
    rows = []
    for r in doc["rows"]:
        status = r.get("jacobian_status")
        jac = _f(r.get("jacobian_s"), 2, " s") if status == "ok" else (status or "not run")
        rows.append([r["n"], _f(r["structured_s"], 2, " s"), jac, _f(r.get("speedup"), 0, "x"),
                     "-" if r.get("rel_err") is None else f"{r['rel_err']:.1e}", _f(r["eigh_s"], 2, " s"),
                     f"{r['n_above_floor']}/{r['n']}"])
    return _table(["N", "structured", "jacobian contraction", "speed-up", "max rel. difference",
                   "eigvalsh", "eigenvalues above floor"], rows)


def _ntk_activations(doc: Mapping) -> str:
    """bench_ntk's ``--activations`` rows: the structured kernel against the jacobian
    contraction per activation, same network and points."""
    rows = []
    for r in doc.get("activations", []):
        status = r.get("jacobian_status")
        jac = _f(r.get("jacobian_s"), 2, " s") if status == "ok" else (status or "not run")
        rows.append([r["activation"], r["n"], _f(r["structured_s"], 3, " s"), jac, _f(r.get("speedup"), 0, "x"),
                     "-" if r.get("rel_err") is None else f"{r['rel_err']:.1e}"])
    return _table(["activation", "N", "structured", "jacobian contraction", "speed-up", "max rel. difference"], rows)


def _ntk_full(doc: Mapping) -> str:
    rows = []
    for r in doc.get("full_image", []):
        if "error" in r:
            rows.append([r.get("side"), "failed: " + r["error"][:100], "-", "-", "-", "-"])
            continue
        eig = f"{_f(r['eigvalsh_s'], 2)} s ({r['solver']})"
        if r.get("eigvalsh_numpy_s") is not None:
            eig += f"; NumPy {_f(r['eigvalsh_numpy_s'], 2)} s"
        rows.append([f"{r['n']} ({r['side']}^2, {r['backend']})", _f(r["total_s"], 2, " s"), _f(r["groups_s"], 2, " s"),
                     _f(r["groups_over_total"], 2, "x"), eig,
                     f"{_f(r['peak_rss_gib'], 2)} GiB ({_f(r['kernel_gib'], 2)} GiB)"])
    return _table(["N", "total kernel", "groups (total, MLP, grid)", "groups / total", "eigvalsh",
                   "peak RSS (one N x N kernel)"], rows)


def _interpolate(doc: Mapping) -> str:
    """Linear rows against ``grid_sample`` bilinear; cubic rows (ours: the uniform cubic
    B-spline) against ``grid_sample`` bicubic where torch has it (2D), with our cubic's
    speed relative to our linear on the same points."""
    rows = [[f"{r['case']}, 2^{int(round(math.log2(r['points'])))} points",
             ("cubic (bicubic)" if r.get("torch_pts_per_s") else "cubic (none)") if r.get("kernel") == "cubic"
             else "linear (bilinear)",
             _g(r["ours_pts_per_s"]), _g(r.get("torch_pts_per_s")),
             _f(r.get("ratio", r.get("bicubic_ratio")), 2, "x"), _f(r.get("cubic_over_linear"), 2, "x")]
            for r in doc["results"]]
    return _table(["case", "kernel (torch mode)", "ours points/s", "torch points/s", "ratio",
                   "ours linear s / ours cubic s"], rows)


def _train(doc: Mapping) -> str:
    threads = [str(t) for t in doc.get("torch_threads", [2, 1])]
    rows = []
    for r in doc["rows"]:
        by = r["torch_steps_per_s_by_threads"]
        best = max(by.values())
        rows.append([r["case"], r["batch"], _f(r["ours_steps_per_s"], 1)]
                    + [_f(by.get(t), 1) for t in threads]
                    + [_f(r["ratio"], 1, "x"), _f(r["ours_steps_per_s"] / best, 1, "x")])
    return _table(["encoding", "batch", "ours steps/s", *[f"torch {t} thread(s)" for t in threads],
                   f"ratio (torch {threads[0]})", "ratio (fastest torch)"], rows)


def _sweep(doc: Mapping) -> str:
    rows = [[r["encoding"], r["batch_size"], r["runs_per_program"], _f(r["seconds"]["sequential"]),
             _f(r["seconds"]["batched"]), _f(r["ratio"], 2, "x")] for r in doc["rows"]]
    ipm = doc["images_per_minute"]
    rows.append(["**all (images/minute)**", "", "", f"**{_f(ipm['sequential'], 1)}**", f"**{_f(ipm['batched'], 1)}**",
                 f"**{_f(doc['ratio'], 2, 'x')}**"])
    return _table(["encoding", "batch", "images per program", "sequential s", "batched s", "ratio"], rows)


def _sweep_runs(docs: Sequence[tuple[str, Mapping]]) -> str:
    rows = []
    for name, d in docs:
        by = {r["encoding"]: r for r in d["rows"]}
        cells = [f"{_f(by[e]['seconds']['sequential'])} -> {_f(by[e]['seconds']['batched'])} s "
                 f"({_f(by[e]['ratio'], 2, 'x')}, {by[e]['runs_per_program']}/program)" if e in by else "-"
                 for e in ("multigrid", "fourier", "baseline")]
        m = d.get("machine", {})
        ipm = d["images_per_minute"]
        rows.append([f"`{name}`", f"{d['images']} x {d['size']} px, {d['epochs']} ep", *cells,
                     f"{_f(ipm['sequential'], 1)} -> {_f(ipm['batched'], 1)}", f"**{_f(d['ratio'], 3, 'x')}**",
                     f"{_load(m.get('loadavg_start'))} / {_load(m.get('loadavg_end'))}"])
    return _table(["file", "images", "multigrid", "fourier", "baseline", "images/minute seq -> batched", "ratio",
                   "load start / end"], rows)


def _labels(doc: Mapping) -> str:
    rows = []
    for r in doc["rows"]:
        if r.get("seconds") is None:
            rows.append([r["method"], r["points"], "skipped", "-", "-"])
            continue
        rows.append([r["method"], f"{r['points']:,}", _g(r.get("points_per_s")), _f(r.get("ratio"), 0, "x"),
                     _f(r.get("agree"), 4)])
    mesh = doc.get("mesh", {})
    return (f"Mesh: {mesh.get('source', '?')} ({mesh.get('faces', '?'):,} faces).\n\n"
            + _table(["method", "points", "points/s", "ratio", "agree"], rows))


def _occupancy(doc: Mapping) -> str:
    rows = [[r["what"], f"{r['points']:,}", _f(r["wall_s"]), _f(r["cpu_s"]), _g(r["points_per_s"]),
             _g(r["points"] / r["cpu_s"]) if r.get("cpu_s") else "-"] for r in doc["rows"]]
    return (f"Mesh: {doc.get('mesh')}, device {doc.get('device')} ({doc.get('backend')}), "
            f"{doc.get('points_per_epoch'):,} points per epoch, {doc.get('epochs')} epoch(s).\n\n"
            + _table(["what", "points", "wall s", "CPU s", "points/s (wall)", "points per CPU-s"], rows))


#: kind -> (renderer of one document, or of [(file, document)] for the "many" kinds; many?)
RENDERERS: dict[str, tuple[Callable, bool]] = {
    "suite": (_suite, False), "ntk": (_ntk, False), "ntk_activations": (_ntk_activations, False),
    "ntk_full": (_ntk_full, False),
    "interpolate": (_interpolate, False), "train": (_train, False), "sweep": (_sweep, False),
    "sweep_runs": (_sweep_runs, True), "labels": (_labels, False), "occupancy": (_occupancy, False),
}


# ----------------------------------------------------------------------------- provenance


def _suite_source(name: str, doc: Mapping, bench: str | None) -> str:
    m = doc.get("machine", {})
    v = m.get("versions", {})
    where = (f"{m.get('backend')} ({m.get('device')}), {m.get('cpu_count')} CPUs ({m.get('processor')}), "
             f"{m.get('memory_gib', '?')} GiB")
    libs = ", ".join(f"{k} {v[k]}" for k in ("jax", "numpy", "scipy", "torch", "neural-tangents") if v.get(k))
    part = f"`{name}`" + (f" (benchmark `{bench}`)" if bench else "")
    return (f"Source: {part}, profile `{doc.get('profile')}`, started {doc.get('started')} on {where}; "
            f"load average {_load(doc.get('loadavg_before'))} before, {_load(doc.get('loadavg_after'))} after; "
            f"{libs}.")


def _file_source(name: str, prov: Mapping) -> str:
    p = prov.get(name)
    if p is None:
        raise ResultsError(f"results/provenance.json: no entry for {name} (machine, date, load)")
    bits = [p.get("machine"), p.get("date")]
    if p.get("load"):
        bits.append(f"load average {p['load']}")
    text = f"Source: `{name}`, " + ", ".join(b for b in bits if b) + "."
    if p.get("command"):
        text += f" Command: `{p['command']}`."
    if p.get("note"):
        text += f" {p['note']}"
    return text


def _read(folder: Path, name: str) -> Mapping:
    path = folder / name
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise ResultsError(f"{path}: no such results file") from None
    except (OSError, ValueError) as err:
        raise ResultsError(f"{path}: not readable JSON ({err})") from err


def _document(folder: Path, ref: str, prov: Mapping) -> tuple[Mapping, str]:
    """``(the figures, the source line)`` of ``FILE`` or ``FILE#BENCHMARK``."""
    name, _, bench = ref.partition("#")
    doc = _read(folder, name)
    if "benchmarks" in doc and "suite" in doc:
        if not bench:
            return doc, _suite_source(name, doc, None)
        entry = doc["benchmarks"].get(bench)
        if entry is None or "raw" not in entry:
            raise ResultsError(f"{folder / name}: no figures for benchmark {bench!r} "
                               f"(status {None if entry is None else entry.get('status')})")
        return entry["raw"], _suite_source(name, doc, bench)
    return doc, _file_source(name, prov)


def _block(spec: str, folder: Path, prov: Mapping) -> str:
    kind, *refs = spec.split()
    if kind not in RENDERERS or not refs:
        raise ResultsError(f"generated block {spec!r}: want KIND FILE..., KIND one of {sorted(RENDERERS)}")
    fn, many = RENDERERS[kind]
    docs = [(ref, *_document(folder, ref, prov)) for ref in refs]
    try:
        if many:
            body = fn([(ref, d) for ref, d, _ in docs])
            sources = "\n".join(f"- {s}" for _, _, s in docs)
        else:
            if len(docs) != 1:
                raise ResultsError(f"generated block {spec!r}: {kind} takes one file")
            body, sources = fn(docs[0][1]), docs[0][2]
    except (KeyError, TypeError, IndexError) as err:
        raise ResultsError(f"generated block {spec!r}: the file lacks {err!r}") from err
    return f"<!-- generated: {spec} -->\n{body}\n\n{sources}\n<!-- /generated -->"


def render(text: str, folder: Path) -> str:
    """``text`` (RESULTS.md) with every generated block rebuilt from the JSON files in ``folder``."""
    folder = Path(folder)
    prov_path = folder / "provenance.json"
    prov = _read(folder, "provenance.json") if prov_path.exists() else {}
    return BLOCK.sub(lambda m: _block(m.group("spec").strip(), folder, prov), text)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.results", description=__doc__.split("\n\n")[0])
    ap.add_argument("--check", action="store_true", help="exit 1 if RESULTS.md is not what the files give")
    ap.add_argument("--results-md", type=Path, default=HERE / "RESULTS.md")
    ap.add_argument("--results-dir", type=Path, default=HERE / "results")
    args = ap.parse_args(argv)
    try:
        text = args.results_md.read_text()
        new = render(text, args.results_dir)
    except OSError as err:
        print(f"error: {args.results_md}: {err.strerror}", file=sys.stderr)
        return 2
    except ResultsError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if args.check:
        if new != text:
            print(f"{args.results_md} is out of date: run python -m benchmarks.results", file=sys.stderr)
            return 1
        return 0
    if new != text:
        args.results_md.write_text(new)
        print(f"wrote {args.results_md}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
