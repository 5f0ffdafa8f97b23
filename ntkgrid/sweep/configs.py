"""The configurations of a sweep: overrides from the command line and ``--config-json`` files."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any

from ntkgrid import files
from ntkgrid.config import TrainConfig

__all__ = ["apply_overrides", "load_config_json"]


def apply_overrides(cfg: TrainConfig, *, epochs: int | None = None, batch_size: int | None = None,
                    learning_rate: float | None = None, ntk_points: int | None = None,
                    seed: int | None = None) -> TrainConfig:
    """``cfg`` with the given fields replaced (``None`` keeps).

    Changing ``epochs`` maps explicit ``checkpoints`` proportionally
    (``round(c * new / old)``), so "middle" and "end" stay the middle and the end.
    Returns ``cfg`` itself when nothing changes; raises ``ValueError`` for ``epochs < 1``.
    """
    ch: dict[str, Any] = {}
    if epochs is not None and epochs != cfg.epochs:
        if epochs < 1:
            raise ValueError(f"epochs must be >= 1, got {epochs}")
        ch["epochs"] = int(epochs)
        if cfg.checkpoints is not None:
            ch["checkpoints"] = tuple(sorted({int(round(c * epochs / cfg.epochs)) for c in cfg.checkpoints}))
    for key, val in (("batch_size", batch_size), ("learning_rate", learning_rate), ("ntk_points", ntk_points),
                     ("seed", seed)):
        if val is not None:
            ch[key] = val
    return cfg.replace(**ch) if ch else cfg


def load_config_json(spec: str, allowed: Iterable[str],
                     kinds: Mapping[str, str] | None = None) -> tuple[str, TrainConfig]:
    """Parse ``"name=path"`` (a ``--config-json`` argument).

    Args:
      spec: ``NAME=PATH``; ``PATH`` holds a ``TrainConfig.to_dict()`` (as written by
        ``experiments.tune``) or a run's ``run.json``/``summary.json`` (its ``"config"``).
      allowed: the names ``NAME`` may take.
      kinds: ``{name: encoding kind}`` the config must have (e.g. ``{"multigrid":
        "multigrid"}``), so that a Fourier config cannot be trained and reported as the
        multigrid; None: any kind.

    Returns:
      ``(name, TrainConfig)``. Raises ``ValueError`` (one line naming the argument or file
      and the problem) for a malformed spec, an unknown name, an unreadable file, a dict
      that is not a config, a non-finite learning rate, or a kind other than ``kinds[name]``.
    """
    name, sep, path = spec.partition("=")
    allowed = list(allowed)
    if not sep or not name or not path:
        raise ValueError(f"--config-json wants NAME=PATH (e.g. multigrid=best.json), got {spec!r}")
    if name not in allowed:
        raise ValueError(f"--config-json {spec!r}: unknown name {name!r}; choose from {', '.join(allowed)}")
    data = files.read_json(path)
    if isinstance(data, dict) and "config" in data and "encoding" not in data:
        data = data["config"]  # a run.json / summary.json of ntkgrid.training also works
    try:
        cfg = TrainConfig.from_dict(data)
    except (TypeError, ValueError, AttributeError) as err:
        raise ValueError(f"{path}: not a TrainConfig dict ({err})") from err
    if not math.isfinite(cfg.learning_rate):
        raise ValueError(f"--config-json {spec!r}: learning_rate must be finite, got {cfg.learning_rate}")
    want = (kinds or {}).get(name)
    if want is not None and cfg.encoding.kind != want:
        raise ValueError(f"--config-json {spec!r}: {path} holds a {cfg.encoding.kind!r} encoding, "
                         f"but {name} is a {want!r} encoding; give it to the name of its kind")
    return name, cfg
