"""Tests for ntkgrid.data.meshes: offline, CPU only, trimesh primitives and tiny files."""

from __future__ import annotations

import gzip
import io
import math
import tarfile
import urllib.error
import urllib.request
import warnings
from pathlib import Path

import numpy as np
import pytest
import trimesh

from ntkgrid.data import DataError
from ntkgrid.data import meshes as M
from ntkgrid.data.meshes import inside, sampling

from ._cases import write_off

RNG = np.random.default_rng(7)


@pytest.fixture(scope="module")
def default_mesh():
    return M.default_shape()


# --------------------------------------------------------------------------- loading


@pytest.mark.parametrize("ext", ["ply", "off", "obj", "stl"])
def test_load_formats_and_normalisation(tmp_path, ext):
    box = trimesh.creation.box(extents=(4.0, 2.0, 1.0))
    box.apply_translation((10.0, -3.0, 7.0))
    p = tmp_path / f"box.{ext}"
    box.export(p)
    m = M.load_mesh(p)
    assert len(m.faces) == 12
    np.testing.assert_allclose(m.bounds, [[0, 0.25, 0.375], [1, 0.75, 0.625]], atol=1e-12)
    assert m.bounds[1, 0] == 1.0 and m.bounds[0, 0] == 0.0  # longest axis: exactly [0, 1]
    meta = m.metadata["ntkgrid"]
    assert meta["watertight"] is True and meta["source"] == str(p)
    # the recorded transform maps original coordinates onto normalised ones
    orig = box.vertices[0]
    np.testing.assert_allclose((orig - meta["offset"]) * meta["scale"], M.normalise_mesh(box.copy()).vertices[0])
    assert M.mesh_info(m)["watertight"] is True


def test_scene_is_concatenated(tmp_path):
    a = trimesh.creation.box(extents=(1, 1, 1))
    b = trimesh.creation.icosphere(subdivisions=1)
    b.apply_translation((3.0, 0, 0))
    p = tmp_path / "scene.glb"
    trimesh.Scene([a, b]).export(p)
    m = M.load_mesh(p)
    assert len(m.faces) == len(a.faces) + len(b.faces)
    assert m.bounds[1, 0] == 1.0


def _bad_mesh(kind: str, tmp_path: Path) -> Path:
    if kind == "text_as_ply":
        p = tmp_path / "fake.ply"
        p.write_text("just some text\n")
    elif kind == "zero_bytes":
        p = tmp_path / "zero.obj"
        p.write_bytes(b"")
    elif kind == "no_faces":
        p = tmp_path / "empty.off"
        p.write_text("OFF\n0 0 0\n")
    elif kind == "point_cloud":
        p = tmp_path / "cloud.ply"
        p.write_text(
            "ply\nformat ascii 1.0\nelement vertex 3\nproperty float x\nproperty float y\n"
            "property float z\nend_header\n0 0 0\n1 0 0\n0 1 0\n"
        )
    elif kind == "nan_vertex":
        p = write_off(tmp_path / "nan.off", [[0, 0, 0], [1, 0, 0], [math.nan, 1, 0], [0, 0, 1]],
                      [[0, 1, 2], [0, 1, 3], [0, 2, 3], [1, 2, 3]])
    elif kind == "mostly_degenerate":
        s = trimesh.creation.icosphere(subdivisions=1)  # 80 faces
        f = np.vstack([s.faces, np.repeat([[0, 0, 1]], 5, axis=0)])  # 5/85 > 1 %
        p = write_off(tmp_path / "degenerate.off", s.vertices, f)
    elif kind == "missing":
        p = tmp_path / "missing.stl"
    elif kind == "faces_only_obj":
        p = tmp_path / "faces_only.obj"
        p.write_text("f 1 2 3\nf 1 3 4\n")
    elif kind == "random_bytes_obj":
        p = tmp_path / "random.obj"
        p.write_bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    elif kind == "random_bytes_stl":
        p = tmp_path / "random.stl"
        p.write_bytes(np.random.default_rng(1).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    elif kind == "face_index_past_vertices_obj":
        p = tmp_path / "bad_index.obj"
        p.write_text("v 0 0 0\nv 1 0 0\nv 0 1 0\nf 1 2 9\n")
    else:  # pragma: no cover
        raise AssertionError(kind)
    return p


@pytest.mark.parametrize(
    "kind,match",
    [
        ("text_as_ply", "not a readable mesh"),
        ("zero_bytes", "empty file"),
        ("no_faces", "no faces"),
        ("point_cloud", "no faces"),
        ("nan_vertex", "NaN"),
        ("mostly_degenerate", "zero area"),
        ("missing", "no such file"),
        ("faces_only_obj", r"OBJ file has 2 face lines \('f'\) but no vertex lines"),
        ("random_bytes_obj", "binary data, not an OBJ file"),
        ("random_bytes_stl", r"neither a valid binary \.stl file nor UTF-8 text"),
        ("face_index_past_vertices_obj", "a face refers to a vertex the file does not have"),
    ],
)
def test_bad_meshes_raise_dataerror_naming_file(tmp_path, kind, match):
    p = _bad_mesh(kind, tmp_path)
    with pytest.raises(DataError, match=match) as ei:
        M.load_mesh(p)
    assert str(ei.value).startswith(str(p))


def test_obj_in_latin1_still_loads(tmp_path):
    p = tmp_path / "tetra.obj"
    p.write_bytes(b"# caf\xe9 (Latin-1 comment)\nv 0 0 0\nv 1 0 0\nv 0 1 0\nv 0 0 1\n"
                  b"f 1 3 2\nf 1 2 4\nf 1 4 3\nf 2 3 4\n")
    m = M.load_mesh(p)
    assert len(m.faces) == 4 and m.metadata["ntkgrid"]["watertight"]


def test_bench_labels_bad_mesh_is_one_line(tmp_path, capsys):
    from benchmarks import bench_labels

    p = tmp_path / "faces.obj"
    p.write_text("f 1 2 3\n")
    assert bench_labels.main(["--mesh", str(p)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and err.startswith(f"error: --mesh {p}: OBJ file has 1 face line ('f') but no vertex lines")
    assert bench_labels.main(["--points", "0"]) == 2


@pytest.mark.parametrize("bad_face", [[0, 0, 1], "colinear"])
def test_few_degenerate_faces_removed_with_warning(tmp_path, bad_face):
    s = trimesh.creation.icosphere(subdivisions=3)  # 1280 faces
    v = np.asarray(s.vertices)
    f = np.asarray(s.faces)
    if bad_face == "colinear":
        a, b = v[f[0, 0]], v[f[0, 1]]
        v = np.vstack([v, (a + b) / 2])
        extra = [[f[0, 0], f[0, 1], len(v) - 1]]
    else:
        extra = [bad_face]
    p = write_off(tmp_path / "few.off", v, np.vstack([f, extra]))
    with pytest.warns(UserWarning, match="removed 1 zero-area"):
        m = M.load_mesh(p)
    assert len(m.faces) == 1280 and m.is_watertight
    meta = m.metadata["ntkgrid"]
    assert meta["removed_degenerate_faces"] == 1
    np.testing.assert_allclose((s.bounds - meta["offset"]) * meta["scale"], m.bounds, atol=1e-12)


def test_open_box_reports_not_watertight(tmp_path):
    box = trimesh.creation.box()
    p = write_off(tmp_path / "open.off", box.vertices, box.faces[1:])
    m = M.load_mesh(p)
    assert m.metadata["ntkgrid"]["watertight"] is False
    assert M.mesh_info(m)["watertight"] is False


# --------------------------------------------------------------------------- occupancy


@pytest.fixture(scope="module")
def sphere():
    return M.mesh_from_arrays(*(lambda s: (s.vertices, s.faces))(trimesh.creation.icosphere(4)))


@pytest.mark.parametrize("method", ["auto", "embree", "winding"])
def test_occupancy_sphere_analytic(sphere, method):
    c = np.asarray(sphere.vertices).mean(0)
    r = np.linalg.norm(sphere.vertices - c, axis=1).mean()
    pts = RNG.random((3000, 3))
    d = np.linalg.norm(pts - c, axis=1)
    far = (d < 0.97 * r) | (d > 1.01 * r)
    lab = M.occupancy(sphere, pts, batch_size=700, method=method)
    assert lab.dtype == np.bool_ and lab.shape == (3000,)
    np.testing.assert_array_equal(lab[far], d[far] < r)


def test_winding_numbers_match_contains_on_watertight():
    torus = M.mesh_from_arrays(*(lambda t: (t.vertices, t.faces))(
        trimesh.creation.torus(major_radius=1.0, minor_radius=0.35, major_sections=48, minor_sections=24)
    ))
    assert torus.is_watertight
    pts = RNG.random((2000, 3))
    w = M.winding_numbers(torus, pts, max_pairs=10_000)
    ref = torus.contains(pts)
    agree = ((w > 0.5) == ref).mean()
    assert agree >= 0.999
    # away from the surface w is an integer (0 or 1); analytic distance in original units
    meta = torus.metadata["ntkgrid"]
    x, y, z = (pts / meta["scale"] + meta["offset"]).T
    dist = np.abs(np.hypot(np.hypot(x, y) - 1.0, z) - 0.35)
    ok = dist > 0.02
    assert ok.mean() > 0.8
    np.testing.assert_allclose(w[ok], np.round(w[ok]), atol=1e-6)
    np.testing.assert_array_equal(M.occupancy(torus, pts, method="winding"), ref)


@pytest.mark.parametrize("open_mesh", [False, True])
def test_fast_winding_numbers_match_exact(open_mesh):
    t = trimesh.creation.torus(major_radius=1.0, minor_radius=0.4, major_sections=96, minor_sections=40)
    faces = t.faces[200:] if open_mesh else t.faces  # a hole in the open case
    tri = M.mesh_from_arrays(t.vertices, faces).triangles
    assert len(tri) > 4096
    pts = np.vstack([RNG.random((300, 3)), tri[::37].mean(axis=1) + RNG.normal(0, 0.01, (len(tri[::37]), 3))])
    exact = M.winding_numbers(tri, pts, exact=True)
    fast = M.winding_numbers(tri, pts, max_pairs=50_000)  # default: clustered for F > 4096
    assert np.abs(fast - exact).max() < 0.03
    clear = np.abs(exact - 0.5) > 0.05
    np.testing.assert_array_equal((fast > 0.5)[clear], (exact > 0.5)[clear])


def test_winding_number_of_open_cube_is_analytic():
    """At the centre of a cube with one triangle missing, w = 1 - 1/12."""
    box = trimesh.creation.box()
    tri = np.asarray(box.triangles)[1:]
    w = M.winding_numbers(tri, np.zeros((1, 3)))
    assert w[0] == pytest.approx(11 / 12, abs=1e-12)
    inside_out = tri[:, ::-1]
    assert M.winding_numbers(inside_out, np.zeros((1, 3)))[0] == pytest.approx(-11 / 12, abs=1e-12)


def test_auto_on_open_mesh_warns_and_uses_winding(tmp_path):
    box = trimesh.creation.box()
    m = M.load_mesh(write_off(tmp_path / "open.off", box.vertices, box.faces[1:]))
    pts = np.array([[0.5, 0.5, 0.5], [0.9, 0.9, 0.9], [0.5, 0.5, 1.5], [2, 2, 2]])
    with pytest.warns(UserWarning, match="not watertight.*winding"):
        lab = M.occupancy(m, pts)
    np.testing.assert_array_equal(lab, [True, True, False, False])


def test_inverted_mesh_still_labelled(sphere):
    inv = sphere.copy()
    inv.invert()
    pts = np.array([[0.5, 0.5, 0.5], [0.02, 0.02, 0.02]])
    np.testing.assert_array_equal(M.occupancy(inv, pts, method="winding"), [True, False])


def test_embree_missing_falls_back_with_warning(sphere, monkeypatch):
    import trimesh.ray

    monkeypatch.setattr(trimesh.ray, "has_embree", False)
    pts = RNG.random((200, 3))
    with pytest.warns(UserWarning, match="Embree ray tracing unavailable"):
        lab = M.occupancy(sphere, pts, method="embree")
    np.testing.assert_array_equal(lab, M.occupancy(sphere, pts, method="winding"))


def test_embree_is_used_when_available(sphere):
    import trimesh.ray
    from trimesh.ray.ray_pyembree import RayMeshIntersector

    assert trimesh.ray.has_embree
    assert isinstance(inside._embree_intersector(sphere), RayMeshIntersector)


@pytest.mark.parametrize("bad", [np.zeros((3, 2)), np.zeros(3)])
def test_occupancy_rejects_bad_points(sphere, bad):
    with pytest.raises(ValueError, match="points"):
        M.occupancy(sphere, bad)


# --------------------------------------------------------------------------- pools


def test_sample_pools_shapes_labels_and_cache(sphere, tmp_path, monkeypatch):
    kw = dict(n_uniform=2000, n_surface=1500, sigma=0.01, seed=3, cache_dir=tmp_path / "cache")
    pools = M.sample_pools(sphere, **kw)
    assert set(pools) == {"points_uniform", "labels_uniform", "points_surface", "labels_surface"}
    for k, n in [("uniform", 2000), ("surface", 1500)]:
        pts, lab = pools[f"points_{k}"], pools[f"labels_{k}"]
        assert pts.shape == (n, 3) and pts.dtype == np.float32
        assert lab.shape == (n,) and lab.dtype == np.float32
        assert set(np.unique(lab)) <= {0.0, 1.0}
        assert pts.min() >= 0 and pts.max() <= 1
    # labels agree with the analytic ball away from the surface
    c = np.asarray(sphere.vertices).mean(0)
    r = np.linalg.norm(sphere.vertices - c, axis=1).mean()
    d = np.linalg.norm(pools["points_uniform"] - c, axis=1)
    far = np.abs(d - r) > 0.02 * r
    np.testing.assert_array_equal(pools["labels_uniform"][far], (d[far] < r).astype(np.float32))
    # near-surface points hug the surface and straddle it
    ds = np.linalg.norm(pools["points_surface"] - c, axis=1) - r
    assert np.abs(ds).mean() < 0.02
    assert 0.3 < pools["labels_surface"].mean() < 0.7
    # uniform occupancy ~ ball volume
    assert abs(pools["labels_uniform"].mean() - 4 / 3 * math.pi * r**3) < 0.04

    files = list((tmp_path / "cache").glob("pools_*.npz"))
    assert len(files) == 1

    def boom(*a, **k):  # a cache hit must not relabel
        raise AssertionError("occupancy called on a cache hit")

    monkeypatch.setattr(sampling, "occupancy", boom)  # the name sample_pools calls
    again = M.sample_pools(sphere, **kw)
    for k in pools:
        np.testing.assert_array_equal(again[k], pools[k])
    monkeypatch.undo()
    other = M.sample_pools(sphere, **{**kw, "seed": 4})
    assert not np.array_equal(other["points_uniform"], pools["points_uniform"])
    assert len(list((tmp_path / "cache").glob("pools_*.npz"))) == 2


def test_sample_pools_deterministic_without_cache(sphere):
    a = M.sample_pools(sphere, 100, 100, seed=1)
    b = M.sample_pools(sphere, 100, 100, seed=1)
    for k in a:
        np.testing.assert_array_equal(a[k], b[k])


def test_sample_pools_corrupt_cache_recomputed(sphere, tmp_path):
    kw = dict(n_uniform=50, n_surface=50, cache_dir=tmp_path)
    ref = M.sample_pools(sphere, **kw)
    (f,) = tmp_path.glob("pools_*.npz")
    f.write_bytes(b"not an npz")
    with pytest.warns(UserWarning, match="unreadable cache"):
        again = M.sample_pools(sphere, **kw)
    np.testing.assert_array_equal(again["labels_surface"], ref["labels_surface"])


# --------------------------------------------------------------------------- default shape


def test_default_shape(default_mesh):
    m = default_mesh
    assert m.is_watertight and m.is_winding_consistent
    assert len(m.faces) > 50_000
    np.testing.assert_allclose(m.bounds, [[0, 0, 0], [1, 1, 1]], atol=1e-6)
    assert 0.05 < m.volume < 0.4  # a thin-walled shell, not a ball
    assert m.euler_number < -20  # many handles: fine detail everywhere
    pts = RNG.random((4000, 3))
    lab = M.occupancy(m, pts)
    assert 0.05 < lab.mean() < 0.4
    assert M.load_any("default").faces.shape == m.faces.shape


def test_default_shape_small_resolution_fast():
    import time

    t = time.perf_counter()
    m = M.default_shape(64)
    assert m.is_watertight and time.perf_counter() - t < 10


# --------------------------------------------------------------------------- downloads


def _fake_remote(tmp_path: Path) -> str:
    """A local 'server' tree mirroring the Stanford layout, reached via file:// URLs."""
    root = tmp_path / "remote"
    ply = io.BytesIO()
    trimesh.creation.icosphere(2).export(ply, file_type="ply")
    data = ply.getvalue()
    for rel, member in M.STANFORD_MODELS.values():
        dst = root / rel
        dst.parent.mkdir(parents=True, exist_ok=True)
        if member is None:
            dst.write_bytes(gzip.compress(data))
        else:
            with tarfile.open(dst, "w:gz") as tf:
                info = tarfile.TarInfo(member)
                info.size = len(data)
                tf.addfile(info, io.BytesIO(data))
    return root.as_uri()


@pytest.mark.parametrize("name", sorted(M.STANFORD_MODELS))
def test_download_stanford_from_mirror(tmp_path, name):
    base = _fake_remote(tmp_path)
    dest = tmp_path / "meshes"
    p = M.download_stanford(name, dest, base_url=base)
    assert p == dest / f"{name}.ply"
    assert len(M.load_mesh(p).faces) == 320
    assert sorted(x.name for x in dest.iterdir()) == [f"{name}.ply"]  # no temp files left

    def no_network(*a, **k):
        raise AssertionError("must reuse the existing file")

    assert M.download_stanford(name, dest, urlopen=no_network) == p


def test_load_any_stanford_uses_cache(tmp_path, monkeypatch):
    base = _fake_remote(tmp_path)
    M.download_stanford("bunny", tmp_path / "c" / "meshes", base_url=base)
    monkeypatch.setattr(
        urllib.request, "urlopen", lambda *a, **k: (_ for _ in ()).throw(AssertionError("network"))
    )
    assert len(M.load_any("bunny", cache_dir=tmp_path / "c").faces) == 320


@pytest.mark.parametrize(
    "error",
    [urllib.error.URLError("Name or service not known"), TimeoutError("timed out"),
     ConnectionRefusedError(111, "refused")],
)
def test_download_unreachable_raises_helpful_dataerror(tmp_path, error):
    def urlopen(*a, **k):
        raise error

    with pytest.raises(DataError) as ei:
        M.download_stanford("armadillo", tmp_path, urlopen=urlopen)
    msg = str(ei.value)
    assert "could not reach https://graphics.stanford.edu/pub/3Dscanrep/armadillo/Armadillo.ply.gz" in msg
    assert "by hand" in msg and "--mesh PATH" in msg
    assert f"place the .ply at {tmp_path / 'armadillo.ply'}" in msg
    assert list(tmp_path.iterdir()) == []


def test_download_unreachable_via_monkeypatched_urlopen(tmp_path, monkeypatch):
    def urlopen(*a, **k):
        raise urllib.error.URLError("network is unreachable")

    monkeypatch.setattr(urllib.request, "urlopen", urlopen)
    with pytest.raises(DataError, match="could not reach.*bunny.tar.gz.*bun_zipper.ply"):
        M.download_stanford("bunny", tmp_path)


@pytest.mark.parametrize("kind", ["empty", "corrupt", "wrong_member", "not_a_mesh"])
def test_download_bad_payloads(tmp_path, kind):
    root = tmp_path / "remote"
    rel, member = M.STANFORD_MODELS["dragon"]
    dst = root / rel
    dst.parent.mkdir(parents=True)
    if kind == "empty":
        dst.write_bytes(b"")
    elif kind == "corrupt":
        dst.write_bytes(b"\x1f\x8b garbage")
    else:
        payload = b"hello, not a ply"
        with tarfile.open(dst, "w:gz") as tf:
            info = tarfile.TarInfo(member if kind == "not_a_mesh" else "other/file.ply")
            info.size = len(payload)
            tf.addfile(info, io.BytesIO(payload))
    with pytest.raises(DataError, match="--mesh PATH"):
        M.download_stanford("dragon", tmp_path / "out", base_url=root.as_uri())
    assert not (tmp_path / "out" / "dragon.ply").exists()


def test_download_unknown_name(tmp_path):
    with pytest.raises(DataError, match="unknown Stanford model"):
        M.download_stanford("teapot", tmp_path)


def test_load_any_path(tmp_path):
    p = tmp_path / "b.stl"
    trimesh.creation.box().export(p)
    assert len(M.load_any(p).faces) == 12
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(DataError):
            M.load_any(tmp_path / "nope.ply")


# ----------------------------------------------------------------------------------
# Solids: inside-out and non-manifold meshes
# ----------------------------------------------------------------------------------

_TET_V = [[0, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0, 1]]
_TET_F = [[0, 2, 1], [0, 1, 3], [0, 3, 2], [1, 2, 3]]  # normals point outwards


def test_load_mesh_refuses_an_inside_out_mesh(tmp_path):
    good = M.load_mesh(write_off(tmp_path / "tet.off", _TET_V, _TET_F))
    assert good.volume > 0
    p = write_off(tmp_path / "inverted.off", _TET_V, [f[::-1] for f in _TET_F])
    with pytest.raises(DataError, match=r"inverted\.off: the mesh is inside out \(signed volume -"):
        M.load_mesh(p)


@pytest.mark.parametrize("n_fins, error", [(2, True), (0, False)])
def test_load_mesh_refuses_non_manifold_edges(tmp_path, n_fins, error):
    # fins hung on the tetrahedron's edge 0-1: with two, four faces share that edge
    v = _TET_V + [[0.5, -1, 0.5], [0.5, -1, -0.5]]
    f = _TET_F + [[0, 1, 4], [0, 5, 1]][:n_fins]
    p = write_off(tmp_path / "fins.off", v if n_fins else _TET_V, f)
    if error:
        with pytest.raises(DataError, match=r"fins\.off: 1 of 10 edges \(10\.0 %\) are non-manifold"):
            M.load_mesh(p)
    else:
        assert M.load_mesh(p).is_watertight


def test_check_solid_keeps_a_few_non_manifold_edges_with_a_warning():
    s = trimesh.creation.icosphere(subdivisions=3)  # 1920 edges
    fin_v = np.vstack([s.vertices, [[3.0, 3.0, 3.0]]])
    e = s.edges_unique[0]
    fins = np.vstack([s.faces, [[e[0], e[1], len(s.vertices)], [e[1], e[0], len(s.vertices)]]])
    m = trimesh.Trimesh(fin_v, fins, process=False)
    with pytest.warns(UserWarning, match="ball: 1 of .* edges .* non-manifold .*; kept"):
        M.check_solid(m, "ball")
