"""Tests for ntkgrid.metrics: PSNR/MSE against NumPy, SSIM/MS-SSIM against pytorch-msssim."""

from __future__ import annotations

import contextlib
import functools
import math
import re
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ntkgrid import metrics
from ntkgrid.metrics import ReducedScalesWarning

# Full-size images must never silently fall back to fewer scales.
pytestmark = pytest.mark.filterwarnings("error::ntkgrid.metrics.ReducedScalesWarning")

H, W = 192, 256  # short side > 160: all five MS-SSIM scales
PHOTOS = ("astronaut", "chelsea", "coffee")

# The public functions are jitted internally (eager calls compile once per shape and
# dtype); these outer jits check that they also trace inside a user's jit.
_ssim_jit = jax.jit(metrics.ssim)
_ms_ssim_jit = jax.jit(metrics.ms_ssim)
FNS = {"ssim": metrics.ssim, "ms_ssim": metrics.ms_ssim}
JIT_FNS = {"ssim": _ssim_jit, "ms_ssim": _ms_ssim_jit}


# ----------------------------------------------------------------------------- test images


@functools.cache
def photo(name: str, h: int = H, w: int = W) -> np.ndarray:
    """A scikit-image photograph, centre-cropped to aspect w/h and resized: (h, w, 3) float64 in [0, 1]."""
    from skimage import data
    from skimage.transform import resize

    img = getattr(data, name)().astype(np.float64) / 255.0
    ih, iw = img.shape[:2]
    if iw * h > ih * w:  # too wide
        cw = round(ih * w / h)
        img = img[:, (iw - cw) // 2 : (iw - cw) // 2 + cw]
    else:
        ch = round(iw * h / w)
        img = img[(ih - ch) // 2 : (ih - ch) // 2 + ch]
    return np.clip(resize(img, (h, w), order=1, anti_aliasing=True), 0.0, 1.0)


def _dct_matrix(n: int = 8) -> np.ndarray:
    k, i = np.meshgrid(np.arange(n), np.arange(n), indexing="ij")
    d = np.sqrt(2.0 / n) * np.cos(np.pi * (2 * i + 1) * k / (2 * n))
    d[0] /= np.sqrt(2.0)
    return d  # orthonormal DCT-II


def jpeg_like(img: np.ndarray, step: float = 0.03) -> np.ndarray:
    """8x8 block DCT, quantisation step growing with frequency, inverse DCT."""
    h, w, c = img.shape
    d = _dct_matrix()
    blocks = img.reshape(h // 8, 8, w // 8, 8, c)
    coef = np.einsum("kn,anbmc,lm->akblc", d, blocks, d)
    q = step * (1.0 + np.add.outer(np.arange(8), np.arange(8)))[None, :, None, :, None]
    coef = np.round(coef / q) * q
    out = np.einsum("kn,akblc,lm->anbmc", d, coef, d).reshape(h, w, c)
    return np.clip(out, 0.0, 1.0)


def low_pass(img: np.ndarray, keep: float = 0.15) -> np.ndarray:
    """Keep the lowest spatial frequencies (|f| < keep * Nyquist): the band-limited
    reconstruction a spectrally biased coordinate network produces early in training."""
    h, w, _ = img.shape
    fy = np.fft.fftfreq(h)[:, None] / 0.5
    fx = np.fft.rfftfreq(w)[None, :] / 0.5
    mask = (np.hypot(fy, fx) < keep)[..., None]
    spec = np.fft.rfft2(img, axes=(0, 1)) * mask
    return np.clip(np.fft.irfft2(spec, s=(h, w), axes=(0, 1)), 0.0, 1.0)


def bilinear_reconstruction(img: np.ndarray, factor: int = 4) -> np.ndarray:
    """Downsample by `factor`, upsample bilinearly: a blurry 'model output'."""
    from skimage.transform import resize

    h, w, _ = img.shape
    small = resize(img, (h // factor, w // factor), order=1, anti_aliasing=True)
    return np.clip(resize(small, (h, w), order=1, anti_aliasing=False), 0.0, 1.0)


def _blur(img):
    from skimage.filters import gaussian

    return gaussian(img, sigma=1.5, channel_axis=-1)


DEGRADATIONS = {
    "blur": _blur,
    "noise": lambda img: np.clip(img + 0.06 * np.random.default_rng(0).standard_normal(img.shape), 0, 1),
    "jpeg": jpeg_like,
    "bilinear": bilinear_reconstruction,
    "lowpass": low_pass,
    "inverted": lambda img: 1.0 - img,  # negative CS: exercises the relu
}


@functools.cache
def pair(name: str, degradation: str) -> tuple[np.ndarray, np.ndarray]:
    x = photo(name)
    return x, DEGRADATIONS[degradation](x)


# ----------------------------------------------------------------------------- torch oracle


@pytest.fixture(scope="module")
def pm():
    pytest.importorskip("torch", reason="torch is needed for the pytorch-msssim oracle")
    return pytest.importorskip("pytorch_msssim", reason="pytorch-msssim is the SSIM oracle")


@contextlib.contextmanager
def torch_one_thread():
    """torch's CPU convolutions get very slow when their thread pool competes for cores."""
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(n)


def _nchw(a: np.ndarray, dtype):
    import torch

    a = np.asarray(a)
    a = a.reshape((-1,) + a.shape[-3:])
    return torch.from_numpy(np.ascontiguousarray(a.transpose(0, 3, 1, 2))).to(dtype)


def torch_metric(pm, fn: str, x, y, dtype_name="float64", batch_shape=(), **kw):
    import torch

    dtype = getattr(torch, dtype_name)
    if "win" in kw:
        kw["win"] = torch.tensor(np.asarray(kw["win"], np.float32)).reshape(1, 1, -1).repeat(x.shape[-1], 1, 1, 1)
    with torch_one_thread():
        out = getattr(pm, fn)(_nchw(x, dtype), _nchw(y, dtype), size_average=False, **kw)
    return out.double().numpy().reshape(batch_shape)


# ----------------------------------------------------------------------------- oracle tests


@pytest.mark.oracle
@pytest.mark.parametrize("fn", ["ssim", "ms_ssim"])
@pytest.mark.parametrize("degradation", list(DEGRADATIONS))
@pytest.mark.parametrize("name", PHOTOS)
def test_matches_pytorch_msssim(pm, name, degradation, fn):
    x, y = pair(name, degradation)
    ours = FNS[fn]
    ref64 = torch_metric(pm, fn, x, y, data_range=1.0)

    with jax.enable_x64(True):
        got64 = ours(jnp.asarray(x), jnp.asarray(y))
        assert got64.dtype == jnp.float64 and got64.shape == ()
        got64 = float(got64)
    assert abs(got64 - ref64) <= 1e-5

    got32 = ours(jnp.asarray(x, jnp.float32), jnp.asarray(y, jnp.float32))
    assert got32.dtype == jnp.float32
    assert abs(float(got32) - ref64) <= 1e-4
    if degradation == "inverted" and fn == "ms_ssim":
        assert got64 == 0.0  # relu(cs) hit zero at some scale


@pytest.mark.oracle
@pytest.mark.parametrize("fn", ["ssim", "ms_ssim"])
def test_batched_matches_pytorch_msssim(pm, fn):
    xs, ys = zip(*(pair(n, d) for n in PHOTOS[:2] for d in ("blur", "noise", "bilinear")))
    x = np.stack(xs).reshape(2, 3, H, W, 3)
    y = np.stack(ys).reshape(2, 3, H, W, 3)
    ours = JIT_FNS[fn]
    with jax.enable_x64(True):
        got = np.asarray(ours(jnp.asarray(x), jnp.asarray(y)))
        loop = np.array([[float(FNS[fn](x[i, j], y[i, j])) for j in range(3)] for i in range(2)])
    assert got.shape == (2, 3)
    np.testing.assert_allclose(got, loop, rtol=0, atol=1e-12)
    ref = torch_metric(pm, fn, x, y, batch_shape=(2, 3), data_range=1.0)
    np.testing.assert_allclose(got, ref, rtol=0, atol=1e-5)
    # Our window handed to torch explicitly: identical up to float64 rounding.
    win = np.asarray(metrics._gaussian_window(11, 1.5, jnp.float32))
    ref_win = torch_metric(pm, fn, x, y, batch_shape=(2, 3), data_range=1.0, win=win)
    np.testing.assert_allclose(got, ref_win, rtol=0, atol=1e-12)
    # float32 on both sides.
    got32 = ours(jnp.asarray(x, jnp.float32), jnp.asarray(y, jnp.float32))
    assert got32.dtype == jnp.float32 and got32.shape == (2, 3)
    ref32 = torch_metric(pm, fn, x, y, "float32", batch_shape=(2, 3), data_range=1.0)
    np.testing.assert_allclose(got32, ref32, rtol=0, atol=1e-4)
    np.testing.assert_allclose(got32, ref, rtol=0, atol=1e-4)


@pytest.mark.oracle
@pytest.mark.parametrize(
    "data_range, weights",
    [(255.0, None), (1.0, (0.2, 0.3, 0.5)), (255.0, (1.0,))],
)
def test_data_range_and_weights_match_pytorch_msssim(pm, data_range, weights):
    x, y = pair("chelsea", "jpeg")
    x, y = x * data_range, y * data_range
    with jax.enable_x64(True):
        got = float(metrics.ms_ssim(x, y, data_range, weights))
        got_ssim = float(metrics.ssim(x, y, data_range))
    kw = {} if weights is None else {"weights": list(weights)}
    assert abs(got - torch_metric(pm, "ms_ssim", x, y, data_range=data_range, **kw)) <= 1e-5
    assert abs(got_ssim - torch_metric(pm, "ssim", x, y, data_range=data_range)) <= 1e-5


def _torch_reduced_ms_ssim(x, y, weights):
    """pytorch-msssim's per-scale loop (its own _ssim and avg_pool2d) for fewer scales."""
    import torch
    import torch.nn.functional as F
    from pytorch_msssim.ssim import _fspecial_gauss_1d, _ssim

    X, Y = _nchw(x, torch.float64), _nchw(y, torch.float64)
    win = _fspecial_gauss_1d(11, 1.5).repeat(X.shape[1], 1, 1, 1)
    levels = []
    with torch_one_thread():
        for i in range(len(weights)):
            s, cs = _ssim(X, Y, data_range=1.0, win=win, size_average=False)
            if i < len(weights) - 1:
                levels.append(torch.relu(cs))
                pad = [n % 2 for n in X.shape[2:]]
                X, Y = F.avg_pool2d(X, kernel_size=2, padding=pad), F.avg_pool2d(Y, kernel_size=2, padding=pad)
        stacked = torch.stack(levels + [torch.relu(s)])
        w = torch.tensor(weights, dtype=torch.float64).view(-1, 1, 1)
        return torch.prod(stacked**w, dim=0).mean(1).numpy()


@pytest.mark.oracle
@pytest.mark.parametrize(
    "h, w, scales",
    [(161, 171, 5), (160, 199, 4), (81, 97, 4), (45, 41, 3), (33, 40, 2), (11, 11, 1)],
)
def test_small_images(pm, h, w, scales):
    x, y = pair("coffee", "noise")
    x, y = x[None, :h, :w], y[None, :h, :w]  # odd sizes exercise the avg-pool padding
    reduced = scales < 5
    expected_w = metrics.MS_SSIM_WEIGHTS[:scales]
    if reduced:
        expected_w = tuple(v / sum(expected_w) for v in expected_w)

    with jax.enable_x64(True):
        rep = metrics.ms_ssim_report(x, y)
        assert (rep["scales"], rep["reduced"]) == (scales, reduced)
        assert rep["weights"] == pytest.approx(expected_w, abs=1e-15)
        assert math.isclose(sum(rep["weights"]), 1.0 if reduced else 1.0001)
        ctx = pytest.warns(ReducedScalesWarning, match=f"using {scales} scales") if reduced else warnings.catch_warnings()
        with ctx:
            val = np.asarray(metrics.ms_ssim(x, y))
        np.testing.assert_array_equal(val, np.asarray(rep["value"]))
        # Explicit renormalised weights give the same number without reduction.
        np.testing.assert_allclose(metrics.ms_ssim(x, y, weights=rep["weights"]), val, rtol=0, atol=1e-14)
        if scales == 1:
            np.testing.assert_allclose(val, np.maximum(np.asarray(metrics.ssim(x, y)), 0), rtol=0, atol=1e-14)
    if reduced:
        ref = _torch_reduced_ms_ssim(x, y, list(rep["weights"]))
    else:
        ref = torch_metric(pm, "ms_ssim", x, y, batch_shape=(1,), data_range=1.0)
    np.testing.assert_allclose(val, ref, rtol=0, atol=1e-5)


# ----------------------------------------------------------------------------- no-oracle tests


@pytest.mark.parametrize(
    "h, w, win_size, scales",
    [
        (161, 161, 11, 5), (192, 256, 11, 5), (4000, 161, 11, 5),
        (160, 160, 11, 4), (160, 4000, 11, 4), (81, 200, 11, 4),
        (80, 80, 11, 3), (41, 41, 11, 3),
        (40, 40, 11, 2), (21, 21, 11, 2),
        (20, 20, 11, 1), (11, 11, 11, 1),
        (97, 97, 7, 5), (96, 96, 7, 4), (7, 7, 7, 1),
    ],
)
def test_ms_ssim_scales_table(h, w, win_size, scales):
    assert metrics.ms_ssim_scales(h, w, win_size) == scales
    # The rule: the coarsest scale (side ceil(s / 2**(S-1)) after padded pooling) fits the window.
    side = min(h, w)
    assert -(-side // 2 ** (scales - 1)) >= win_size
    if scales < 5:
        assert -(-side // 2**scales) < win_size


def test_ms_ssim_scales_respects_number_of_weights():
    assert metrics.ms_ssim_scales(1000, 1000, max_scales=3) == 3
    assert metrics.ms_ssim_weights(1000, 1000, weights=(0.2, 0.3, 0.5)) == (0.2, 0.3, 0.5)
    assert metrics.ms_ssim_weights(30, 30, weights=(1.0, 1.0, 2.0)) == (0.5, 0.5)


@pytest.mark.parametrize("shape", [(10, 50, 3), (50, 10, 1), (2, 5, 5, 3), (10, 10, 3)])
def test_too_small_raises(shape):
    x = jnp.zeros(shape)
    hw = f"({shape[-3]}, {shape[-2]})"
    with pytest.raises(ValueError, match=re.escape(hw)):
        metrics.ms_ssim_scales(shape[-3], shape[-2])
    with pytest.raises(ValueError, match=re.escape(hw)):
        metrics.ms_ssim(x, x)
    with pytest.raises(ValueError, match=re.escape(hw)):
        metrics.ms_ssim_report(x, x)
    with pytest.raises(ValueError, match="too small"):
        metrics.ssim(x, x)


def test_shape_mismatch_raises():
    with pytest.raises(ValueError, match="same shape"):
        metrics.psnr(jnp.zeros((8, 8, 3)), jnp.zeros((8, 8, 1)))
    with pytest.raises(ValueError, match="H, W, C"):
        metrics.mse(jnp.zeros((8, 8)), jnp.zeros((8, 8)))


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("data_range", [1.0, 255.0])
@pytest.mark.parametrize("batch", [(), (4,), (2, 3)])
def test_psnr_and_mse_against_numpy(batch, data_range, dtype):
    rng = np.random.default_rng(len(batch))
    x = rng.random(batch + (12, 17, 3)) * data_range
    y = np.clip(x + rng.normal(0, 0.05 * data_range, x.shape), 0, data_range)
    flat_x, flat_y = x.reshape(-1, 12 * 17 * 3), y.reshape(-1, 12 * 17 * 3)
    ref_mse = np.array([np.sum((a - b) ** 2) / a.size for a, b in zip(flat_x, flat_y)]).reshape(batch)
    ref_psnr = np.array([10 * math.log10(data_range**2 / m) for m in ref_mse.ravel()]).reshape(batch)
    with jax.enable_x64(dtype == "float64"):
        xs, ys = jnp.asarray(x, dtype), jnp.asarray(y, dtype)
        got_mse = jax.jit(metrics.mse)(xs, ys)
        got_psnr = jax.jit(metrics.psnr)(xs, ys, data_range)
        assert got_psnr.shape == batch and got_psnr.dtype == jnp.dtype(dtype)
        assert got_mse.shape == batch and got_mse.dtype == jnp.dtype(dtype)
    tol = 1e-12 if dtype == "float64" else 1e-5
    np.testing.assert_allclose(got_mse, ref_mse, rtol=tol * 10)
    np.testing.assert_allclose(got_psnr, ref_psnr, rtol=tol)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_identical_images(dtype):
    x = photo("astronaut")
    with jax.enable_x64(dtype == "float64"):
        xs = jnp.asarray(x, dtype)
        assert np.isposinf(float(metrics.psnr(xs, xs)))
        np.testing.assert_array_equal(metrics.mse(xs, xs), 0.0)
        np.testing.assert_allclose(metrics.ssim(xs, xs), 1.0, rtol=0, atol=1e-6)
        np.testing.assert_allclose(metrics.ms_ssim(xs, xs), 1.0, rtol=0, atol=1e-6)
        assert metrics.ms_ssim(xs, xs).dtype == jnp.dtype(dtype)


def test_jit_traced_data_range_and_integer_inputs():
    x, y = pair("chelsea", "blur")
    x8, y8 = (np.round(x * 255).astype(np.uint8), np.round(y * 255).astype(np.uint8))
    for fn, jitted in ((metrics.psnr, jax.jit(metrics.psnr)), (metrics.ssim, _ssim_jit), (metrics.ms_ssim, _ms_ssim_jit)):
        eager = fn(x8, y8, 255.0)
        traced = jitted(jnp.asarray(x8), jnp.asarray(y8), jnp.float32(255.0))
        assert eager.dtype == jnp.float32
        np.testing.assert_allclose(traced, eager, rtol=1e-5)
        np.testing.assert_allclose(fn(x8 / 255.0, y8 / 255.0), eager, rtol=1e-4)


def test_gaussian_window():
    win = np.asarray(metrics._gaussian_window(11, 1.5, jnp.float32))
    g = np.exp(-((np.arange(11) - 5.0) ** 2) / 4.5)
    np.testing.assert_allclose(win, g / g.sum(), rtol=1e-6)
    np.testing.assert_array_equal(win, win[::-1])
    other = np.asarray(metrics._gaussian_window(7, 1.0, jnp.float32))
    g = np.exp(-((np.arange(7) - 3.0) ** 2) / 2.0)
    np.testing.assert_allclose(other, g / g.sum(), rtol=1e-6)
    with pytest.raises(ValueError, match="odd"):
        metrics._gaussian_window(10, 1.5, jnp.float32)


@pytest.mark.oracle
def test_window_is_pytorch_msssims(pm):
    from pytorch_msssim.ssim import _fspecial_gauss_1d

    ref = _fspecial_gauss_1d(11, 1.5).numpy().ravel()
    np.testing.assert_allclose(np.asarray(metrics._gaussian_window(11, 1.5, jnp.float32)), ref, rtol=2e-7, atol=0)
