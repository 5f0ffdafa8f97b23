"""ntkgrid.sweep.sources: which images a sweep takes and their pixels."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from ntkgrid.data import DataError
from ntkgrid.data.images import BUNDLED_IMAGE_NAMES
from ntkgrid.sweep.sources import ImageSource, load_source, resolve_image, select_sources


def _png(path, side=12, value=128):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((side, side, 3), value, np.uint8)).save(path)
    return path


def test_bundled_selection_is_a_seeded_subset_in_name_order():
    picked, warns = select_sources(None, 3, seed=0)
    assert warns == [] and len(picked) == 3 and len({s.image_id for s in picked}) == 3
    assert all(s.bundled and s.synset is None and s.source == f"skimage.data.{s.image_id}" for s in picked)
    order = list(BUNDLED_IMAGE_NAMES)
    assert [order.index(s.image_id) for s in picked] == sorted(order.index(s.image_id) for s in picked)
    assert select_sources(None, 3, seed=0)[0] == picked  # deterministic
    assert {s.image_id for s in select_sources(None, 3, seed=1)[0]} != {s.image_id for s in picked}
    everything, _ = select_sources(None, len(order) + 5, seed=0)
    assert [s.image_id for s in everything] == order  # more than there are: all of them


def test_selection_rejects_no_images():
    with pytest.raises(ValueError, match="must be >= 1, got 0"):
        select_sources(None, 0, seed=0)


def test_folder_selection_one_image_per_synset_with_safe_unique_ids(tmp_path):
    _png(tmp_path / "n02" / "b c.png")
    _png(tmp_path / "n01" / "a.png")
    (tmp_path / "n03").mkdir()  # no images: skipped with a warning
    picked, warns = select_sources(tmp_path, 5, seed=0)
    assert [s.synset for s in picked] == ["n01", "n02"]
    assert [s.image_id for s in picked] == ["n01_a", "n02_b_c"]
    assert all(not s.bundled for s in picked)
    assert picked[0].source == str(tmp_path / "n01" / "a.png")
    assert any("n03" in w for w in warns) and any("fewer than the 5 requested" in w for w in warns)
    with pytest.raises(DataError, match="does not exist"):
        select_sources(tmp_path / "missing", 1, seed=0)


def test_load_source_bundled_and_file_and_bad_file(tmp_path):
    img = load_source(ImageSource("astronaut", "skimage.data.astronaut"), 8)
    assert img.shape == (8, 8, 3) and img.dtype == np.float32 and 0.0 <= img.min() <= img.max() <= 1.0
    flat = load_source(ImageSource("x", str(_png(tmp_path / "x.png", 16, 255))), 8)
    np.testing.assert_allclose(flat, 1.0, atol=1e-6)
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not an image")
    with pytest.raises(DataError, match="bad.png"):
        load_source(ImageSource("bad", str(bad)), 8)


def test_resolve_image_names_a_bundled_photo_a_file_or_fails_clearly(tmp_path):
    src, img = resolve_image("astronaut", 8)
    assert src == ImageSource("astronaut", "skimage.data.astronaut") and img.shape == (8, 8, 3)
    src, img = resolve_image(_png(tmp_path / "my photo.png"), 8)
    assert src.image_id == "my_photo" and src.source == str(tmp_path / "my photo.png") and img.shape == (8, 8, 3)
    with pytest.raises(DataError, match="neither an image file nor a bundled photo; bundled photos: "):
        resolve_image("nosuchphoto", 8)
