"""ntkgrid.sweep.folder: the identity a rerun or a merge of a sweep folder must match."""

from __future__ import annotations

from ntkgrid import presets
from ntkgrid.config import TrainConfig
from ntkgrid.sweep.folder import identity_diff

from .test_config import OLD_HASHGRID_RUN


def _manifest(configs: dict) -> dict:
    return {"table": "imagenet", "preset": "quick", "size": 64, "seed": 0, "num_images": 1, "configs": configs,
            "selection": [{"image_id": "astronaut", "path": "/somewhere/astronaut.png"}], "machine": "any"}


def test_a_manifest_written_before_config_format_2_keeps_its_identity():
    old = _manifest({"hashgrid": OLD_HASHGRID_RUN})  # format 1, as written by the code before
    now = _manifest({"hashgrid": TrainConfig.from_dict(OLD_HASHGRID_RUN).to_dict()})
    assert "config_format" not in OLD_HASHGRID_RUN and now["configs"]["hashgrid"]["config_format"] == 2
    assert identity_diff(old, now) == []
    other = TrainConfig.from_dict(OLD_HASHGRID_RUN).replace(encoding={"min_res": 5})
    diffs = identity_diff(old, _manifest({"hashgrid": other.to_dict()}))
    assert diffs and all("min_res" in d for d in diffs)
    paper = _manifest({n: c.to_dict() for n, c in presets.IMAGENET.items()})
    assert identity_diff(paper, old) != []
    assert identity_diff(_manifest({"x": {"encoding": {"kind": "nope"}}}), _manifest({"x": {"encoding": {}}})) != []
