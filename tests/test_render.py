"""Tests for ntkgrid.render: ray marching, shading, mesh ray casting, marching cubes."""

from __future__ import annotations

import math

import numpy as np
import pytest
import trimesh

from ntkgrid import render as R

CENTRE = np.array([0.5, 0.45, 0.52])
RADIUS = 0.3


def sphere_field(centre=CENTRE, radius=RADIUS, sharpness=400.0):
    """Analytic occupancy of a ball: sigmoid(sharpness * (r - |x - c|)), 0.5 on the sphere."""

    def field(p):
        d = np.linalg.norm(np.asarray(p, np.float64) - centre, axis=1)
        return 1.0 / (1.0 + np.exp(-sharpness * (radius - d)))

    return field


def hit_points(camera, out):
    o, d = camera.rays()
    m = out.mask
    return o[m] + out.depth[m][:, None].astype(np.float64) * d[m]


@pytest.mark.parametrize("azimuth, elevation", [(0.0, 0.0), (35.0, 25.0), (200.0, -40.0)])
def test_orthographic_sphere_silhouette_depth_and_normals(azimuth, elevation):
    cam = R.Camera.orbit(azimuth, elevation, 3.0, target=tuple(CENTRE), fov_deg=None, ortho_height=0.9,
                         width=120, height=120)
    out = R.render_field(sphere_field(), cam, n_steps=96, n_bisect=10)
    area = out.mask.sum() * cam.pixel_size() ** 2
    assert area == pytest.approx(math.pi * RADIUS**2, rel=0.02)
    p = hit_points(cam, out)
    # bisection puts hits on the sphere (the box diagonal / 96 / 2^10 is ~2e-5)
    assert np.abs(np.linalg.norm(p - CENTRE, axis=1) - RADIUS).max() < 2e-4
    n_true = (p - CENTRE) / np.linalg.norm(p - CENTRE, axis=1, keepdims=True)
    n = out.normals[out.mask].astype(np.float64)
    assert np.allclose(np.linalg.norm(n, axis=1), 1.0, atol=1e-5)
    assert np.min(np.sum(n * n_true, axis=1)) > 0.999
    # pixels outside the silhouette are background; lit pixels are not
    assert np.all(out.image[~out.mask] == 1.0)
    assert out.image.shape == (120, 120, 3) and out.image.dtype == np.float32
    assert np.all(np.isinf(out.depth[~out.mask]))
    # nearest point faces the camera: its depth is |eye - c| - r
    assert out.depth[out.mask].min() == pytest.approx(3.0 - RADIUS, abs=1e-3)


def test_perspective_camera_and_shading_order():
    cam = R.Camera.orbit(20.0, 10.0, 2.5, target=tuple(CENTRE), fov_deg=30.0, width=96, height=80)
    out = R.render_field(sphere_field(), cam, n_steps=128)
    assert out.mask.shape == (80, 96)
    # a ball seen from distance D in perspective subtends half-angle asin(r / D)
    half = math.asin(RADIUS / 2.5)
    px_per_rad = (80 / 2) / math.tan(math.radians(15.0))
    expected = math.pi * (math.tan(half) * px_per_rad) ** 2
    assert out.mask.sum() == pytest.approx(expected, rel=0.05)
    assert out.mask[40, 48] and not out.mask[0, 0]
    p = hit_points(cam, out)
    assert np.abs(np.linalg.norm(p - CENTRE, axis=1) - RADIUS).max() < 5e-4
    # Lambertian: brightness follows n . l, darker at grazing angles than facing the light
    lum = out.image[out.mask].mean(1)
    assert lum.max() > lum.min() + 0.3


def test_render_mesh_matches_analytic_field():
    ball = trimesh.creation.icosphere(subdivisions=5, radius=RADIUS)
    ball.apply_translation(CENTRE)
    cam = R.Camera.orbit(30.0, 20.0, 3.0, target=tuple(CENTRE), fov_deg=None, ortho_height=0.9, width=100,
                         height=100)
    gt = R.render_mesh(ball, cam)
    fld = R.render_field(sphere_field(), cam, n_steps=96)
    assert np.mean(gt.mask == fld.mask) > 0.99
    both = gt.mask & fld.mask
    err = np.abs(gt.depth[both] - fld.depth[both])
    assert np.median(err) < 1e-3 and np.percentile(err, 99) < 3e-3  # facets sag; grazing rays amplify it
    dots = np.sum(gt.normals[both] * fld.normals[both], axis=-1)
    assert np.median(dots) > 0.999  # flat facets vs the exact sphere


def test_ray_starting_inside_and_thin_slab():
    # a slab 0.4 < x < 0.6: rays along +x enter at 0.4 (refined well below one step)
    def slab(p):
        return ((p[:, 0] > 0.4) & (p[:, 0] < 0.6)).astype(np.float32)

    o = np.array([[-1.0, 0.5, 0.5], [0.5, 0.5, 0.5], [-1.0, 2.0, 0.5]])
    d = np.array([[1.0, 0.0, 0.0], [1.0, 0.0, 0.0], [1.0, 0.0, 0.0]])
    hit, t, evals = R.march(slab, o, d, step=0.03, n_bisect=12)
    assert hit.tolist() == [True, True, False]  # third ray misses the box
    assert t[0] == pytest.approx(1.4, abs=0.03 / 2**12 + 1e-9)
    assert t[1] == 0.0  # starts inside: the hit is at the (clamped) entry point
    assert evals > 0
    # a sheet thinner than the step can be stepped over: documented fixed-step behaviour
    hit_thin, _, _ = R.march(lambda p: (np.abs(p[:, 0] - 0.5) < 0.001).astype(np.float32), o[:1], d[:1],
                             step=0.03)
    assert not hit_thin[0]


def test_ray_box():
    o = np.array([[-1.0, 0.5, 0.5], [0.5, 0.5, 0.5], [-1.0, -1.0, 0.5], [0.5, 2.0, 0.5]])
    d = np.array([[1.0, 0, 0], [0, 0, 1.0], [1.0, 0, 0], [1.0, 0, 0]])
    tn, tf = R.ray_box(o, d)
    np.testing.assert_allclose(tn[:2], [1.0, 0.0])
    np.testing.assert_allclose(tf[:2], [2.0, 0.5])
    assert tn[2] > tf[2] and tn[3] > tf[3]  # parallel to a slab and outside it: misses


def test_camera_validation():
    with pytest.raises(ValueError, match="parallel"):
        R.Camera(eye=(0.5, 3.0, 0.5), target=(0.5, 0.5, 0.5), up=(0.0, 1.0, 0.0))
    with pytest.raises(ValueError, match="fov_deg"):
        R.Camera(fov_deg=180.0)
    with pytest.raises(ValueError, match="image size"):
        R.Camera(width=0)
    with pytest.raises(ValueError, match="orthographic"):
        R.Camera().pixel_size()


@pytest.mark.parametrize("resolution", [48, 65])
def test_marching_cubes_sphere_is_watertight_with_expected_volume(tmp_path, resolution):
    mesh = R.extract_surface(sphere_field(), resolution)
    assert mesh.is_watertight and mesh.is_winding_consistent
    assert mesh.volume == pytest.approx(4.0 / 3.0 * math.pi * RADIUS**3, rel=0.02)  # > 0: outward faces
    np.testing.assert_allclose(mesh.bounds, [CENTRE - RADIUS, CENTRE + RADIUS], atol=1.5 / resolution)
    path = tmp_path / "sphere.ply"
    mesh.export(path)
    back = trimesh.load(path)
    assert back.is_watertight and back.volume == pytest.approx(mesh.volume, rel=1e-6)


def test_marching_cubes_closes_shapes_cut_by_the_box_and_handles_empty():
    # a ball poking out of the box: padding closes the cut, the volume is the clipped ball
    big = sphere_field(centre=np.array([0.0, 0.5, 0.5]), radius=0.4)
    mesh = R.extract_surface(big, 64)
    assert mesh.is_watertight
    assert mesh.volume == pytest.approx(0.5 * 4.0 / 3.0 * math.pi * 0.4**3, rel=0.03)
    empty = R.extract_surface(lambda p: np.zeros(len(p)), 16)
    assert len(empty.faces) == 0


def test_network_field_pads_chunks():
    import jax

    from ntkgrid.config import TrainConfig
    from ntkgrid.models import build_model

    model = build_model(TrainConfig(hidden=(8, 8)), 3, 1)
    x = np.random.default_rng(0).random((37, 3)).astype(np.float32)
    v = model.init(jax.random.PRNGKey(0), x[:1])
    f = R.network_field(model.apply, v, chunk=16)
    want = 1.0 / (1.0 + np.exp(-np.asarray(model.apply(v, x))[:, 0]))
    np.testing.assert_allclose(f(x), want, rtol=1e-5, atol=1e-6)


def test_save_panel(tmp_path):
    import imageio.v3 as iio

    img = np.zeros((20, 30, 3), np.float32)
    R.save_panel(tmp_path / "p.png", [("a", img), ("b", img + 1, "a note")], suptitle="t")
    assert iio.imread(tmp_path / "p.png").ndim == 3
    with pytest.raises(ValueError):
        R.save_panel(tmp_path / "q.png", [])
