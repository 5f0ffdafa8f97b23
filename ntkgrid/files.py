"""The one home for writing and reading the project's files, and for formatting numbers.

Every file the project writes goes through :func:`write_bytes`: written next to its
destination under a temporary name and moved into place with :func:`os.replace`, so a run
that is interrupted leaves either the old file or the new one, never half of either.
JSON goes through :func:`to_jsonable` first (NumPy/JAX values to Python numbers,
non-finite floats to ``null``), so what is written is always strict JSON.
"""

from __future__ import annotations

import json
import math
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["diff", "fmt", "markdown_table", "printable", "read_json", "read_jsonl", "safe_name", "to_jsonable", "write_bytes",
           "write_json", "write_jsonl", "write_text"]


def to_jsonable(obj: Any) -> Any:
    """NumPy/JAX arrays and scalars to lists and numbers, non-finite floats to ``None``,
    tuples to lists, ``Path`` to ``str``; recursive over mappings and sequences."""
    if isinstance(obj, Mapping):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_jsonable(v) for v in obj]
    if isinstance(obj, Path):
        return str(obj)
    if hasattr(obj, "__array__") and not isinstance(obj, (str, bytes)):
        a = np.asarray(obj)
        return to_jsonable(a.item() if a.ndim == 0 else a.tolist())
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, np.generic):
        return to_jsonable(obj.item())
    return obj


def write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically (parents created); returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        tmp.write_bytes(data)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


_SURROGATE = re.compile("[\ud800-\udfff]")


def printable(text: str) -> str:
    """``text`` with every lone surrogate written as a backslash escape, so that it encodes as
    UTF-8: the undecodable bytes of a file name that is not UTF-8 (Python's
    ``surrogateescape``, U+DC80-U+DCFF) as ``\\xNN`` (the byte), other lone surrogates as
    ``\\uNNNN``. Text without them is returned unchanged."""
    def esc(m: re.Match) -> str:
        c = ord(m.group())
        return f"\\x{c - 0xDC00:02x}" if 0xDC80 <= c <= 0xDCFF else f"\\u{c:04x}"

    return _SURROGATE.sub(esc, text)


def write_text(path: str | os.PathLike, text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically; returns the path. Lone surrogates (the
    undecodable bytes of a non-UTF-8 file name) are written as :func:`printable` escapes."""
    try:
        data = text.encode()
    except UnicodeEncodeError:
        data = printable(text).encode()
    return write_bytes(path, data)


def write_json(path: str | os.PathLike, obj: Any, *, indent: int | None = 1) -> Path:
    """Write ``obj`` as strict JSON (through :func:`to_jsonable`) atomically; returns the path."""
    return write_text(path, json.dumps(to_jsonable(obj), indent=indent, allow_nan=False) + "\n")


def write_jsonl(path: str | os.PathLike, rows: Iterable[Any]) -> Path:
    """Write one compact JSON object per line atomically; returns the path."""
    return write_text(path, "".join(json.dumps(to_jsonable(r), allow_nan=False) + "\n" for r in rows))


def read_json(path: str | os.PathLike, *, error: type[Exception] = ValueError) -> Any:
    """Parse a JSON file. A missing or malformed file raises ``error`` with a message that
    names the file and the problem."""
    path = Path(path)
    try:
        return json.loads(path.read_text())
    except FileNotFoundError as err:
        raise error(f"{path}: no such file") from err
    except (OSError, ValueError) as err:
        raise error(f"{path}: cannot be read as JSON ({err})") from err


def read_jsonl(path: str | os.PathLike, *, error: type[Exception] = ValueError) -> list[Any]:
    """Parse a JSON-lines file (blank lines skipped). A malformed line raises ``error``
    naming the file and the line number; a missing file gives ``[]``."""
    path = Path(path)
    if not path.exists():
        return []
    rows = []
    for i, line in enumerate(path.read_text().splitlines(), start=1):
        if line.strip():
            try:
                rows.append(json.loads(line))
            except ValueError as err:
                raise error(f"{path}:{i}: cannot be read as JSON ({err})") from err
    return rows


def safe_name(text: str, default: str = "item") -> str:
    """``text`` reduced to ``[A-Za-z0-9._-]`` (runs of others become ``_``, leading and
    trailing ``._`` stripped), for use as a file or folder name; ``default`` if nothing is left."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", str(text)).strip("._") or default


def fmt(v: Any, digits: int = 2, *, missing: str = "-") -> str:
    """A short number: ``digits`` decimals, scientific below 1e-2 or from 1e5 on; ``None``
    and non-finite floats print as ``missing``; anything else through ``str``."""
    if v is None:
        return missing
    if isinstance(v, (float, np.floating)):
        v = float(v)
        if not math.isfinite(v):
            return missing
        if v != 0 and (abs(v) < 1e-2 or abs(v) >= 1e5):
            return f"{v:.2e}"
        return f"{v:.{digits}f}"
    return str(v)


def markdown_table(header: Sequence[str], rows: Iterable[Sequence[Any]], digits: int = 2) -> str:
    """A GitHub Markdown table; numbers through :func:`fmt`, strings as they are."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for r in rows:
        lines.append("| " + " | ".join(v if isinstance(v, str) else fmt(v, digits) for v in r) + " |")
    return "\n".join(lines) + "\n"


def diff(stored: Any, now: Any, prefix: str = "") -> list[str]:
    """Where two JSON-like values differ, one line per differing leaf
    (``"a.b: stored 1, now 2"``; values longer than 80 characters just say they differ)."""
    if isinstance(stored, Mapping) and isinstance(now, Mapping):
        out = []
        for k in sorted(set(stored) | set(now), key=str):
            out += diff(stored.get(k, "<missing>"), now.get(k, "<missing>"), f"{prefix}{k}.")
        return out
    if stored != now:
        sa, sb = repr(stored), repr(now)
        if len(sa) > 80 or len(sb) > 80:
            return [f"{prefix.rstrip('.')} differs"]
        return [f"{prefix.rstrip('.')}: stored {sa}, now {sb}"]
    return []
