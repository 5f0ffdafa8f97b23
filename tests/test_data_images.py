"""Tests for ntkgrid.data.images: offline, CPU only, small synthetic files."""

from __future__ import annotations

import struct
import warnings
import zlib
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import pytest
from PIL import Image

from ntkgrid.data import DataError
from ntkgrid.data import images as I

RNG = np.random.default_rng(1234)


# --------------------------------------------------------------------------- helpers


def _paeth(a: np.ndarray, b: np.ndarray, c: np.ndarray) -> np.ndarray:
    a, b, c = (x.astype(np.int32) for x in (a, b, c))
    p = a + b - c
    pa, pb, pc = np.abs(p - a), np.abs(p - b), np.abs(p - c)
    return np.where((pa <= pb) & (pa <= pc), a, np.where(pb <= pc, b, c))


def write_png16(path: Path, arr: np.ndarray, filters=(0, 1, 2, 3, 4)) -> None:
    """Minimal 16-bit PNG encoder cycling through the five row filters."""
    arr = np.asarray(arr, dtype=np.uint16)
    h, w = arr.shape[:2]
    c = 1 if arr.ndim == 2 else arr.shape[2]
    ctype = {1: 0, 2: 4, 3: 2, 4: 6}[c]
    bpp = 2 * c
    raw = arr.astype(">u2").reshape(h, w * c).view(np.uint8).reshape(h, w * bpp)
    rows = []
    prev = np.zeros(w * bpp, dtype=np.uint8)
    for y in range(h):
        x = raw[y]
        left = np.concatenate([np.zeros(bpp, np.uint8), x[:-bpp]])
        upleft = np.concatenate([np.zeros(bpp, np.uint8), prev[:-bpp]])
        f = filters[y % len(filters)]
        pred = {
            0: np.zeros_like(x),
            1: left,
            2: prev,
            3: ((left.astype(np.int32) + prev) // 2).astype(np.uint8),
            4: _paeth(left, prev, upleft).astype(np.uint8),
        }[f]
        rows.append(bytes([f]) + (x - pred).astype(np.uint8).tobytes())
        prev = x

    def chunk(t: bytes, d: bytes) -> bytes:
        return struct.pack(">I", len(d)) + t + d + struct.pack(">I", zlib.crc32(t + d) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", w, h, 16, ctype, 0, 0, 0)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"".join(rows)))
        + chunk(b"IEND", b"")
    )


def u8(shape) -> np.ndarray:
    return RNG.integers(0, 256, size=shape, dtype=np.uint8)


def u16(shape) -> np.ndarray:
    return RNG.integers(0, 65536, size=shape, dtype=np.uint16)


# --------------------------------------------------------------------------- load_image


@pytest.mark.parametrize("ext", [".png", ".bmp", ".tif", ".ppm"])
def test_rgb8_lossless_formats_exact(tmp_path, ext):
    a = u8((9, 13, 3))
    p = tmp_path / f"img{ext}"
    Image.fromarray(a).save(p)
    x = I.load_image(p)
    assert x.shape == (9, 13, 3) and x.dtype == np.float32
    np.testing.assert_array_equal(x, a.astype(np.float32) / 255)


def test_grey8_to_rgb(tmp_path):
    a = u8((7, 5))
    p = tmp_path / "g.png"
    Image.fromarray(a).save(p)
    x = I.load_image(p)
    assert x.shape == (7, 5, 3)
    for ch in range(3):
        np.testing.assert_array_equal(x[..., ch], a / np.float32(255))


def test_grey16_png_divides_by_65535(tmp_path):
    a = u16((6, 8))
    a[0, 0], a[0, 1] = 0, 65535
    p = tmp_path / "g16.png"
    iio.imwrite(p, a)
    x = I.load_image(p)
    np.testing.assert_allclose(x[..., 1], a / 65535.0, rtol=0, atol=1e-7)
    assert x[0, 0, 0] == 0.0 and x[0, 1, 0] == 1.0


@pytest.mark.parametrize(
    "channels,filters",
    [(3, (0,)), (3, (1,)), (3, (2,)), (3, (3,)), (3, (4,)), (3, (0, 1, 2, 3, 4)), (4, (4, 3, 1)), (2, (2, 4))],
)
def test_colour16_png_read_by_pillow_at_8_bits(tmp_path, channels, filters):
    """16-bit colour PNGs go through Pillow (no hand-written decoder): the high byte of each sample."""
    a = u16((11, 7, channels))
    p = tmp_path / "c16.png"
    write_png16(p, a, filters)
    x = I.load_image(p)
    f = (a >> 8).astype(np.float32) / np.float32(255)
    if channels in (2, 4):  # composite over white
        alpha = f[..., -1:]
        f = f[..., :-1] * alpha + (1 - alpha)
    if f.shape[2] == 1:
        f = np.repeat(f, 3, axis=2)
    np.testing.assert_allclose(x, f, rtol=0, atol=2e-7)


def test_colour16_tiff_full_precision(tmp_path):
    import tifffile

    a = u16((9, 6, 3))
    p = tmp_path / "c16.tif"
    tifffile.imwrite(p, a, photometric="rgb")
    np.testing.assert_allclose(I.load_image(p), a / 65535.0, rtol=0, atol=1e-7)


def test_hand_written_png_decoder_is_gone():
    import ntkgrid.data.images.load as L

    assert not any(n.startswith(("_read_png", "_png_")) for n in vars(L))


def test_cmyk_jpeg_loads_as_its_true_colours(tmp_path):
    """ImageNet holds CMYK JPEGs; the K channel used to be read as alpha (a white target)."""
    rgb = np.zeros((16, 16, 3), np.uint8)
    rgb[:8] = (200, 30, 60)
    rgb[8:] = (20, 120, 240)
    p = tmp_path / "cmyk.JPEG"
    Image.fromarray(rgb).convert("CMYK").save(p, quality=100)
    assert Image.open(p).mode == "CMYK"
    x = I.load_image(p)
    np.testing.assert_allclose(x, rgb / 255.0, atol=6 / 255)


def test_cmyk_tiff_is_converted_not_read_as_rgba(tmp_path):
    cmyk = np.zeros((8, 8, 4), np.uint8)
    cmyk[:4, ..., 0] = 255  # full cyan: (0, 1, 1), not "red with alpha 0" (white)
    cmyk[4:, ..., 3] = 128  # 50 % black, no colour: mid grey
    p = tmp_path / "k.tif"
    Image.fromarray(cmyk, mode="CMYK").save(p)
    x = I.load_image(p)
    np.testing.assert_allclose(x[:4], np.broadcast_to([0, 1, 1], (4, 8, 3)), atol=1e-6)
    np.testing.assert_allclose(x[4:], 127 / 255, atol=1e-6)


def test_png_named_jpeg_loads_by_content(tmp_path):
    a = u8((6, 5, 3))
    p = tmp_path / "n01440764_1.JPEG"
    Image.fromarray(a).save(p, format="PNG")
    np.testing.assert_array_equal(I.load_image(p), a / np.float32(255))


@pytest.mark.parametrize("orientation", [1, 2, 3, 4, 5, 6, 7, 8])
def test_exif_orientation_applied(tmp_path, orientation):
    from PIL import ImageOps

    a = np.zeros((6, 10, 3), np.uint8)
    a[:3, :5] = (255, 0, 0)  # a red top-left quadrant
    im = Image.fromarray(a)
    exif = Image.Exif()
    exif[0x0112] = orientation
    p = tmp_path / "rot.jpg"
    im.save(p, exif=exif, quality=100)
    x = I.load_image(p)
    want = np.asarray(ImageOps.exif_transpose(Image.open(p)), np.float32) / 255
    assert x.shape == want.shape == ((6, 10, 3) if orientation < 5 else (10, 6, 3))
    np.testing.assert_array_equal(x, want)
    if orientation == 6:  # rotate 90 degrees clockwise: the red block moves to the top right
        assert x[0, -1, 0] > 0.9 and x[0, 0, 0] < 0.1


@pytest.mark.parametrize("orientation", [2, 3, 4, 5, 6, 7, 8])
def test_tiff_orientation_tag_matches_pillow(tmp_path, orientation):
    import tifffile
    from PIL import ImageOps

    a = u8((5, 7, 3))
    p = tmp_path / "o.tif"
    tifffile.imwrite(p, a, photometric="rgb", extratags=[(274, "H", 1, orientation, True)])
    want = np.asarray(ImageOps.exif_transpose(Image.open(p)), np.float32) / 255
    np.testing.assert_array_equal(I.load_image(p), want)


@pytest.mark.parametrize("scale,ok", [(1.0, True), (255.0, False), (-1.0, False)])
def test_float_tiff_rule(tmp_path, scale, ok):
    """Float images must hold [0, 1]; 0-255 data is refused with its range, never clipped to white."""
    import tifffile

    a = RNG.random((5, 6, 3)).astype(np.float32)
    a[0, 0] = 1.0
    p = tmp_path / "f.tif"
    tifffile.imwrite(p, a * scale, photometric="rgb")
    if ok:
        np.testing.assert_array_equal(I.load_image(p), a)
    else:
        with pytest.raises(DataError, match=r"float image with values in \[.*\]; float images must hold") as ei:
            I.load_image(p)
        assert str(p) in str(ei.value)


def test_float_grey_tiff_through_pillow_mode_f(tmp_path):
    a = RNG.random((4, 5)).astype(np.float32)
    p = tmp_path / "f.tif"
    Image.fromarray(a, mode="F").save(p)
    np.testing.assert_array_equal(I.load_image(p)[..., 2], a)


def test_pixel_limit_applies_to_every_image(tmp_path, monkeypatch):
    """Pillow's decompression-bomb limit, for PNG (Pillow), 16-bit PNG and TIFF (tifffile) alike."""
    from PIL import Image as PILImage

    files = {}
    files["png"] = tmp_path / "a.png"
    Image.fromarray(u8((10, 10, 3))).save(files["png"])
    files["png16"] = tmp_path / "b.png"
    write_png16(files["png16"], u16((10, 10, 3)))
    files["tif"] = tmp_path / "c.tif"
    Image.fromarray(u8((10, 10, 3))).save(files["tif"])
    for p in files.values():
        I.load_image(p)
    monkeypatch.setattr(PILImage, "MAX_IMAGE_PIXELS", 99)
    for p in files.values():  # 100 pixels: between the limit and twice it, where Pillow only warns
        with pytest.raises(DataError, match="decompression-bomb limit of 99 pixels") as ei:
            I.load_image(p)
        assert str(ei.value).startswith(str(p))
    monkeypatch.setattr(PILImage, "MAX_IMAGE_PIXELS", 40)  # over twice the limit: Pillow's own error
    with pytest.raises(DataError, match="decompression-bomb limit") as ei:
        I.load_image(files["png"])
    assert "unknown" not in str(ei.value) and "plugin" not in str(ei.value)


def test_huge_dimensions_in_header_refused_without_decoding(tmp_path):
    import struct as st

    def chunk(t, d):
        return st.pack(">I", len(d)) + t + d + st.pack(">I", zlib.crc32(t + d) & 0xFFFFFFFF)

    p = tmp_path / "bomb.png"
    ihdr = st.pack(">IIBBBBB", 100000, 100000, 8, 2, 0, 0, 0)
    p.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IEND", b""))
    with pytest.raises(DataError, match="decompression-bomb limit") as ei:
        I.load_image(p)
    assert str(ei.value).startswith(str(p))


@pytest.mark.parametrize("mode", ["PA", "La", "RGBa", "RGBX", "YCbCr", "LAB", "HSV", "I;16", "I", "F", "P"])
def test_every_pillow_mode_becomes_rgb(mode):
    """Modes the formats can hold (TIFF LAB, WebP/TIFF premultiplied, ...), converted in memory."""
    import ntkgrid.data.images.load as L

    rgba = u8((4, 5, 4))
    rgba[..., 3] = RNG.integers(1, 256, (4, 5))
    base = Image.fromarray(rgba, mode="RGBA")
    if mode in ("I;16", "I", "F"):
        im = base.convert("L").convert(mode)
    elif mode == "P":
        im = base.convert("RGB").convert("P")
    else:
        im = base.convert(mode)
    if mode == "F":  # 0-255 floats: refused by the float rule (see test_float_tiff_rule)
        with pytest.raises(DataError, match="float image"):
            I.to_rgb_float(L._pillow_array(im), "m")
        return
    x = I.to_rgb_float(L._pillow_array(im), "m")
    assert x.shape == (4, 5, 3) and x.dtype == np.float32
    if mode in ("PA", "La", "RGBa"):  # alpha kept and composited over white
        ref = im.convert("LA" if mode == "La" else "RGBA")
        np.testing.assert_allclose(x, I.to_rgb_float(np.asarray(ref)), atol=1e-6)
    elif mode in ("I;16", "I"):  # 8-bit grey values in a 16/32-bit mode: /65535
        np.testing.assert_allclose(x[..., 0], np.asarray(base.convert("L")) / 65535.0, atol=1e-7)
    else:
        np.testing.assert_array_equal(x, np.asarray(im.convert("RGB"), np.float32) / 255)


def test_rgba_composited_over_white(tmp_path):
    a = np.zeros((1, 3, 4), np.uint8)
    a[0, 0] = (255, 0, 0, 0)  # fully transparent red -> white
    a[0, 1] = (255, 0, 0, 255)  # opaque red
    a[0, 2] = (0, 0, 0, 51)  # 20 % black over white -> 0.8
    p = tmp_path / "rgba.png"
    Image.fromarray(a).save(p)
    x = I.load_image(p)
    np.testing.assert_allclose(x[0, 0], [1, 1, 1], atol=1e-6)
    np.testing.assert_allclose(x[0, 1], [1, 0, 0], atol=1e-6)
    np.testing.assert_allclose(x[0, 2], [0.8, 0.8, 0.8], atol=1e-6)


def test_grey_alpha(tmp_path):
    la = np.stack([u8((4, 4)), np.full((4, 4), 255, np.uint8)], -1)
    la[0, 0, 1] = 0
    p = tmp_path / "la.png"
    Image.fromarray(la, mode="LA").save(p)
    x = I.load_image(p)
    assert np.all(x[0, 0] == 1.0)
    np.testing.assert_allclose(x[1:, :, 0], la[1:, :, 0] / 255.0, atol=1e-6)


def test_palette_png(tmp_path):
    rgb = u8((10, 12, 3))
    pal = Image.fromarray(rgb).convert("P")
    p = tmp_path / "pal.png"
    pal.save(p)
    expected = np.asarray(pal.convert("RGB"), np.float32) / 255
    np.testing.assert_array_equal(I.load_image(p), expected)


def test_bilevel_and_gif_first_frame(tmp_path):
    bw = RNG.random((8, 8)) > 0.5
    p = tmp_path / "bw.png"
    Image.fromarray(bw).save(p)
    np.testing.assert_array_equal(I.load_image(p)[..., 0], bw.astype(np.float32))
    frames = [Image.fromarray(np.full((5, 6, 3), v, np.uint8)) for v in (10, 200)]
    g = tmp_path / "anim.gif"
    frames[0].save(g, save_all=True, append_images=frames[1:])
    x = I.load_image(g)
    assert x.shape == (5, 6, 3)
    assert abs(float(x.mean()) - 10 / 255) < 0.02


def _bad_file(kind: str, tmp_path: Path) -> Path:
    if kind == "truncated_jpeg":
        good = tmp_path / "good.jpg"
        Image.fromarray(u8((64, 64, 3))).save(good, quality=95)
        b = good.read_bytes()
        p = tmp_path / "truncated.jpg"
        p.write_bytes(b[: len(b) // 2])
    elif kind == "truncated_png16":
        full = tmp_path / "full16.png"
        write_png16(full, u16((16, 16, 3)))
        p = tmp_path / "truncated16.png"
        p.write_bytes(full.read_bytes()[:-60])
    elif kind == "text_as_jpeg":
        p = tmp_path / "notes.jpg"
        p.write_text("this is not an image\n")
    elif kind == "empty":
        p = tmp_path / "empty.png"
        p.write_bytes(b"")
    elif kind == "missing":
        p = tmp_path / "missing.png"
    elif kind == "directory":
        p = tmp_path / "adir.png"
        p.mkdir()
    else:  # pragma: no cover
        raise AssertionError(kind)
    return p


@pytest.mark.parametrize(
    "kind", ["truncated_jpeg", "truncated_png16", "text_as_jpeg", "empty", "missing", "directory"]
)
def test_bad_files_raise_dataerror_naming_file(tmp_path, kind):
    p = _bad_file(kind, tmp_path)
    with pytest.raises(DataError) as ei:
        I.load_image(p)
    assert str(p) in str(ei.value)
    assert ei.value.source == str(p)
    assert isinstance(ei.value, ValueError)


def test_dataerror_pickles():
    import pickle

    e = pickle.loads(pickle.dumps(DataError("/x/y.png", "broken")))
    assert str(e) == "/x/y.png: broken" and e.problem == "broken"


# --------------------------------------------------------------------------- resizing


@pytest.mark.parametrize(
    "shape,size,out",
    [
        ((40, 60), 20, (20, 20)),
        ((40, 60), (20, 30), (20, 30)),
        ((40, 60), (10, 40), (10, 40)),
        ((60, 40), 40, (40, 40)),
        ((33, 33), 33, (33, 33)),
    ],
)
def test_resize_short_side_then_centre_crop(tmp_path, shape, size, out):
    p = tmp_path / "r.png"
    Image.fromarray(u8(shape + (3,))).save(p)
    x = I.load_image(p, size=size)
    assert x.shape == out + (3,) and x.dtype == np.float32
    assert x.min() >= 0 and x.max() <= 1


def test_no_resize_needed_is_a_pure_centre_crop(tmp_path):
    a = u8((40, 60, 3))
    p = tmp_path / "c.png"
    Image.fromarray(a).save(p)
    np.testing.assert_array_equal(I.load_image(p, size=40), a[:, 10:50] / np.float32(255))


def test_resize_preserves_constant_and_smooths(tmp_path):
    p = tmp_path / "k.png"
    Image.fromarray(np.full((64, 64, 3), 128, np.uint8)).save(p)
    np.testing.assert_allclose(I.load_image(p, size=16), 128 / 255, atol=1e-5)
    checker = (np.indices((64, 64)).sum(0) % 2 * 255).astype(np.uint8)
    q = tmp_path / "checker.png"
    Image.fromarray(checker).save(q)
    small = I.load_image(q, size=16)  # anti-aliased: the checkerboard averages to grey
    assert np.abs(small - 0.5).max() < 0.1


@pytest.mark.parametrize("size", [50, (30, 70), (41, 10)])
def test_too_small_rejected(tmp_path, size):
    p = tmp_path / "tiny.png"
    Image.fromarray(u8((40, 60, 3))).save(p)
    with pytest.raises(DataError) as ei:
        I.load_image(p, size=size)
    msg = str(ei.value)
    assert str(p) in msg and "40x60" in msg and "smaller" in msg


@pytest.mark.parametrize("size", [0, -3, (2,), "ab"])
def test_bad_size_argument(tmp_path, size):
    p = tmp_path / "i.png"
    Image.fromarray(u8((8, 8, 3))).save(p)
    with pytest.raises(ValueError):
        I.load_image(p, size=size)


def test_to_rgb_float_rejects_nan_and_odd_shapes():
    with pytest.raises(DataError, match="NaN"):
        I.to_rgb_float(np.full((2, 2, 3), np.nan, np.float32), "arr")
    with pytest.raises(DataError, match="shape"):
        I.to_rgb_float(np.zeros((2, 2, 5), np.uint8), "arr")
    with pytest.raises(DataError, match=r"arr: float image with values in \[-0.5, 2\]"):
        I.to_rgb_float(np.array([[-0.5, 2.0]], np.float64), "arr")
    x = I.to_rgb_float(np.array([[-1e-4, 0.5, 1.0 + 1e-4]], np.float64))  # rounding noise: clipped
    np.testing.assert_array_equal(x[0, :, 0], [0.0, 0.5, 1.0])


# --------------------------------------------------------------------------- bundled


def test_bundled_images_offline():
    imgs = I.bundled_images()
    assert list(imgs) == sorted(imgs) == list(I.BUNDLED_IMAGE_NAMES)
    for name, x in imgs.items():
        assert x.ndim == 3 and x.shape[2] == 3 and x.dtype == np.float32, name
        assert 0.0 <= x.min() and x.max() <= 1.0 and x.std() > 0.01, name
    cam = imgs["camera"]
    assert np.array_equal(cam[..., 0], cam[..., 2])


def test_bundled_image_size_and_unknown():
    x = I.bundled_image("astronaut", size=(64, 96))
    assert x.shape == (64, 96, 3)
    x[:] = 0  # a copy: the cache stays intact
    assert I.bundled_image("astronaut").max() > 0
    with pytest.raises(DataError, match="not a bundled image"):
        I.bundled_image("eagle")


# --------------------------------------------------------------------------- folders


def make_imagenet(root: Path, n_synsets=6, per=3, empty=(2,)) -> list[str]:
    wnids = [f"n{1000 + i:08d}" for i in range(n_synsets)]
    for k, w in enumerate(wnids):
        d = root / w
        d.mkdir(parents=True)
        if k in empty:
            (d / "README.txt").write_text("no images here")
            continue
        for j in range(per):
            Image.fromarray(u8((24, 32, 3))).save(d / f"{w}_{j}.JPEG")
        (d / ".hidden.jpg").write_text("ignored")
    return wnids


def test_scan_image_folder_deterministic(tmp_path):
    wnids = make_imagenet(tmp_path)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        a = I.scan_image_folder(tmp_path, num_synsets=3, seed=0)
        b = I.scan_image_folder(tmp_path, num_synsets=3, seed=0)
        runs = {tuple(r.path for r in I.scan_image_folder(tmp_path, 3, seed=s)) for s in range(8)}
    assert a == b and len(a) == 3
    assert [r.synset for r in a] == sorted(r.synset for r in a)
    for r in a:
        assert r.synset in wnids and r.synset != wnids[2]
        assert r.path.parent.name == r.synset and r.name == r.path.stem
        assert r.path.suffix == ".JPEG"
    assert len(runs) > 1  # the seed matters
    with pytest.raises(AttributeError):
        a[0].synset = "x"  # frozen


def test_scan_takes_all_and_warns_when_too_few(tmp_path):
    make_imagenet(tmp_path, n_synsets=4, empty=(1,))
    with pytest.warns(UserWarning) as rec:
        recs = I.scan_image_folder(tmp_path, num_synsets=10)
    msgs = " ".join(str(w.message) for w in rec)
    assert len(recs) == 3
    assert "no image files" in msgs and "n00001001" in msgs
    assert "only 3 synset" in msgs


@pytest.mark.parametrize("kind", ["missing", "empty", "file", "no_images"])
def test_scan_bad_roots(tmp_path, kind):
    root = tmp_path / "root"
    if kind == "empty":
        root.mkdir()
    elif kind == "file":
        root.write_text("x")
    elif kind == "no_images":
        (root / "n0001").mkdir(parents=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(DataError) as ei:
            I.scan_image_folder(root)
    assert str(root) in str(ei.value)


@pytest.mark.parametrize("n", [1, 2, 3, 7, 12])
def test_shard_partitions(n):
    items = list(range(10))
    parts = [I.shard(items, f"{i}/{n}") for i in range(n)]
    assert sorted(sum(parts, [])) == items
    assert max(map(len, parts)) - min(map(len, parts)) <= 1
    assert I.shard(items, f"0/{n}") == parts[0]  # deterministic


@pytest.mark.parametrize("spec", ["3/3", "-1/2", "a/b", "1", "0/0", "1/2/3", "", "2 / 1"])
def test_shard_bad_spec(spec):
    with pytest.raises(ValueError, match="shard"):
        I.shard([1, 2, 3], spec)


def test_load_records_skips_bad_files(tmp_path):
    make_imagenet(tmp_path, n_synsets=4, empty=())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        recs = I.scan_image_folder(tmp_path, num_synsets=4)
    # corrupt one, truncate another, shrink a third below the size
    recs[1].path.write_text("garbage")
    b = recs[2].path.read_bytes()
    recs[2].path.write_bytes(b[: len(b) // 3])
    Image.fromarray(u8((8, 8, 3))).save(recs[3].path, format="JPEG")
    with pytest.warns(UserWarning, match="skipping image"):
        loaded, skipped = I.load_records(recs, size=16)
    assert [r for r, _ in loaded] == [recs[0]]
    assert loaded[0][1].shape == (16, 16, 3)
    assert [r for r, _ in skipped] == recs[1:]
    for r, reason in skipped:
        assert str(r.path) in reason


# --------------------------------------------------------------------------- datasets


@pytest.mark.parametrize("shape", [(2, 2, 3), (5, 7, 3), (4, 9, 1), (6, 3)])
def test_image_dataset_roundtrip_and_convention(shape):
    img = RNG.random(shape).astype(np.float32)
    coords, values = I.image_to_dataset(img)
    H, W = shape[:2]
    C = shape[2] if len(shape) == 3 else 1
    assert coords.shape == (H * W, 2) and coords.dtype == np.float32
    assert values.shape == (H * W, C) and values.dtype == np.float32
    np.testing.assert_array_equal(I.dataset_to_image(values, shape), img.reshape(H, W, C))
    # x = col / (W-1), y = row / (H-1), row-major
    np.testing.assert_array_equal(coords[0], [0, 0])
    np.testing.assert_array_equal(coords[W - 1], [1, 0])
    np.testing.assert_array_equal(coords[(H - 1) * W], [0, 1])
    np.testing.assert_array_equal(coords[-1], [1, 1])
    r, c = H - 1, 1
    np.testing.assert_allclose(coords[r * W + c], [c / (W - 1), r / (H - 1)], rtol=1e-6)
    assert coords.min() == 0 and coords.max() == 1


def test_image_dataset_rejects_single_row():
    with pytest.raises(ValueError):
        I.image_to_dataset(np.zeros((1, 5, 3)))
    with pytest.raises(ValueError):
        I.dataset_to_image(np.zeros((10, 3)), (3, 3))


@pytest.mark.parametrize(
    "shape,n,exact",
    [
        ((64, 64), 256, True),
        ((30, 50, 3), 100, True),
        ((512, 512), 4096, True),
        ((10, 200), 400, False),
        ((100, 100), 1000, False),
        ((8, 8), 1000, True),  # more than there are: all 64 pixels
        ((5, 5), 1, True),
    ],
)
def test_eval_subset(shape, n, exact):
    H, W = shape[:2]
    idx = I.eval_subset(shape, n)
    assert idx.dtype == np.int64
    assert np.all(np.diff(idx) > 0) and idx.min() >= 0 and idx.max() < H * W
    if exact:
        assert len(idx) == min(n, H * W)
    else:
        assert abs(len(idx) - n) <= 0.1 * n
    rows, cols = np.unique(idx // W), np.unique(idx % W)
    assert len(rows) * len(cols) == len(idx)  # a regular sub-grid
    if len(rows) > 1 and len(cols) > 1:
        assert rows[0] == 0 and rows[-1] == H - 1 and cols[0] == 0 and cols[-1] == W - 1
    np.testing.assert_array_equal(idx, I.eval_subset(shape, n))


@pytest.mark.parametrize("pixels,first,last", [("corners", (0.0, 0.0), (1.0, 1.0)),
                                               ("centres", (0.5 / 5, 0.5 / 4), (1 - 0.5 / 5, 1 - 0.5 / 4))])
def test_image_to_dataset_pixel_conventions(pixels, first, last):
    img = np.random.default_rng(0).random((4, 5, 3)).astype(np.float32)  # H=4 rows, W=5 columns
    coords, values = I.image_to_dataset(img, pixels=pixels)
    np.testing.assert_allclose(coords[0], first, rtol=1e-6)  # pixel (row 0, col 0): (x, y)
    np.testing.assert_allclose(coords[-1], last, rtol=1e-6)
    np.testing.assert_allclose(coords[1] - coords[0], (1 / 4 if pixels == "corners" else 1 / 5, 0), rtol=1e-6)
    np.testing.assert_array_equal(values.reshape(img.shape), img)
    with pytest.raises(ValueError, match="pixels"):
        I.image_to_dataset(img, pixels="edges")


@pytest.mark.parametrize("shape, n, hw", [
    ((64, 64), 4096, (64, 64)), ((128, 128), 4096, (64, 64)), ((128, 128), 1000, (31, 32)),
    ((20, 100), 900, (20, 45)), ((7, 9), 1, (1, 1)),
])
def test_ntk_window_is_one_contiguous_centred_block(shape, n, hw):
    idx, got = I.ntk_window(shape, n)
    assert got == hw and idx.size == hw[0] * hw[1] <= n
    rows, cols = np.unravel_index(idx, shape)
    # Every pixel of one block: consecutive rows and columns, no stride.
    assert set(np.diff(np.unique(rows))) <= {1} and set(np.diff(np.unique(cols))) <= {1}
    assert np.unique(rows).size * np.unique(cols).size == idx.size
    assert abs(rows.min() - (shape[0] - 1 - rows.max())) <= 1 and abs(cols.min() - (shape[1] - 1 - cols.max())) <= 1


def test_ntk_window_refuses_more_points_than_pixels():
    with pytest.raises(ValueError, match="5000 points requested but the image has only 64x64 = 4096"):
        I.ntk_window((64, 64), 5000)
    with pytest.raises(ValueError, match=">= 1"):
        I.ntk_window((64, 64), 0)
