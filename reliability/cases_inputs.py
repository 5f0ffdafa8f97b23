"""Campaign cases for inputs: image files, mesh files, the occupancy CLI, spectra and the
small CLIs (ntk_evolution, bench_labels, bench_sweep). Each case writes its own input."""

from __future__ import annotations

import json
import struct
import zlib
from pathlib import Path

import numpy as np

from reliability.campaign import Case, Outcome, classify_error_run, cli, digests, expect_error, expect_ok, run_cli

RNG = np.random.default_rng(21)


# ----------------------------------------------------------------------------- images


def _load(p: Path, size=None):
    from ntkgrid.data.images import load_image

    return lambda: load_image(p, size)


def _close(want: np.ndarray, atol: float):
    def check(x) -> str | None:
        if x.shape != want.shape:
            return f"shape {x.shape}, want {want.shape}"
        err = float(np.abs(x - want).max())
        return None if err <= atol else f"max error {err:.4f} > {atol:.4f}"

    return check


def _png_header_only(path: Path, w: int, h: int) -> None:
    def chunk(t: bytes, d: bytes) -> bytes:
        return struct.pack(">I", len(d)) + t + d + struct.pack(">I", zlib.crc32(t + d) & 0xFFFFFFFF)

    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0))
                     + chunk(b"IEND", b""))


def cmyk_jpeg(tmp: Path) -> Outcome:
    from PIL import Image

    rgb = np.zeros((16, 16, 3), np.uint8)
    rgb[:8], rgb[8:] = (200, 30, 60), (20, 120, 240)
    p = tmp / "n01_cmyk.JPEG"
    Image.fromarray(rgb).convert("CMYK").save(p, quality=100)
    return expect_ok(_load(p), _close(rgb / 255.0, 6 / 255))


def cmyk_tiff(tmp: Path) -> Outcome:
    from PIL import Image

    cmyk = np.zeros((8, 8, 4), np.uint8)
    cmyk[:4, ..., 0] = 255  # cyan
    cmyk[4:, ..., 3] = 128  # 50 % black
    p = tmp / "k.tif"
    Image.fromarray(cmyk, mode="CMYK").save(p)
    want = np.concatenate([np.broadcast_to([0.0, 1.0, 1.0], (4, 8, 3)), np.full((4, 8, 3), 127 / 255)])
    return expect_ok(_load(p), _close(want, 1e-6))


def png_named_jpeg(tmp: Path) -> Outcome:
    from PIL import Image

    a = RNG.integers(0, 256, (6, 5, 3), dtype=np.uint8)
    p = tmp / "n01_1.JPEG"
    Image.fromarray(a).save(p, format="PNG")
    return expect_ok(_load(p), _close(a / 255.0, 1e-7))


def exif_rotated(tmp: Path) -> Outcome:
    from PIL import Image

    a = np.zeros((6, 10, 3), np.uint8)
    a[:3, :5] = (255, 0, 0)
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to view
    p = tmp / "camera.jpg"
    Image.fromarray(a).save(p, exif=exif, quality=100, subsampling=0)  # 4:4:4: sharp red edges survive
    want = np.rot90(a, -1) / 255.0  # stored 6x10, viewed 10x6 with the red block top right
    return expect_ok(_load(p), _close(want, 24 / 255))


def png16_rgb(tmp: Path) -> Outcome:
    a = RNG.integers(0, 65536, (9, 7, 3), dtype=np.uint16)
    p = tmp / "c16.png"
    raw = b"".join(b"\x00" + row.astype(">u2").tobytes() for row in a)

    def chunk(t: bytes, d: bytes) -> bytes:
        return struct.pack(">I", len(d)) + t + d + struct.pack(">I", zlib.crc32(t + d) & 0xFFFFFFFF)

    p.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 7, 9, 16, 2, 0, 0, 0))
                  + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))
    return expect_ok(_load(p), _close((a >> 8) / 255.0, 1e-6))  # documented: Pillow's 8 bits (high byte)


def png16_grey(tmp: Path) -> Outcome:
    import imageio.v3 as iio

    a = RNG.integers(0, 65536, (6, 8), dtype=np.uint16)
    p = tmp / "g16.png"
    iio.imwrite(p, a)
    return expect_ok(_load(p), _close(np.repeat((a / 65535.0)[..., None], 3, 2), 1e-7))


def tiff16_rgb(tmp: Path) -> Outcome:
    import tifffile

    a = RNG.integers(0, 65536, (5, 6, 3), dtype=np.uint16)
    p = tmp / "c16.tif"
    tifffile.imwrite(p, a, photometric="rgb")
    return expect_ok(_load(p), _close(a / 65535.0, 1e-7))


def float_tiff(scale: float, nan: bool = False):
    def case(tmp: Path) -> Outcome:
        import tifffile

        a = RNG.random((5, 6, 3)).astype(np.float32)
        a[0, 0] = 1.0
        if nan:
            a[1, 1, 1] = np.nan
        p = tmp / "f.tif"
        tifffile.imwrite(p, a * scale, photometric="rgb")
        if scale == 1.0 and not nan:
            return expect_ok(_load(p), _close(a, 0.0))
        return expect_error(_load(p), p, also="NaN" if nan else "float image")

    return case


def alpha_png(mode: str):
    def case(tmp: Path) -> Outcome:
        from PIL import Image

        p = tmp / f"{mode}.png"
        if mode == "P":
            im = Image.new("P", (4, 4), 0)
            im.putpalette([255, 0, 0, 0, 255, 0] + [0] * 762)
            im.info["transparency"] = 0  # index 0 (red) fully transparent -> white
            im.save(p, transparency=0)
            want = np.ones((4, 4, 3))
        elif mode == "LA":
            la = np.zeros((4, 4, 2), np.uint8)
            la[..., 0], la[..., 1] = 0, 51  # 20 % black over white
            Image.fromarray(la, mode="LA").save(p)
            want = np.full((4, 4, 3), 0.8)
        else:
            rgba = np.zeros((4, 4, 4), np.uint8)
            rgba[..., 0], rgba[..., 3] = 255, 255
            Image.fromarray(rgba).save(p)
            want = np.zeros((4, 4, 3))
            want[..., 0] = 1
        return expect_ok(_load(p), _close(want, 1e-6))

    return case


def gif_first_frame(tmp: Path) -> Outcome:
    from PIL import Image

    frames = [Image.fromarray(np.full((5, 6, 3), v, np.uint8)) for v in (10, 200)]
    p = tmp / "anim.gif"
    frames[0].save(p, save_all=True, append_images=frames[1:])
    return expect_ok(_load(p), lambda x: None if abs(float(x.mean()) - 10 / 255) < 0.02 else f"mean {x.mean():.3f}")


def bilevel(tmp: Path) -> Outcome:
    from PIL import Image

    bw = RNG.random((8, 8)) > 0.5
    p = tmp / "bw.png"
    Image.fromarray(bw).save(p)
    return expect_ok(_load(p), _close(np.repeat(bw[..., None], 3, 2).astype(float), 0.0))


def bad_image(kind: str):
    def case(tmp: Path) -> Outcome:
        from PIL import Image

        also = None
        if kind in ("truncated_jpeg", "truncated_png"):
            fmt = "JPEG" if kind == "truncated_jpeg" else "PNG"
            good = tmp / f"good.{fmt.lower()}"
            Image.fromarray(RNG.integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(good, format=fmt)
            p = tmp / f"cut.{fmt.lower()}"
            p.write_bytes(good.read_bytes()[: len(good.read_bytes()) // 2])
            also = "truncated"
        elif kind == "zero_bytes":
            p = tmp / "zero.png"
            p.write_bytes(b"")
            also = "empty"
        elif kind == "text_as_png":
            p = tmp / "notes.png"
            p.write_text("this is not an image\n")
            also = "image file"
        elif kind == "huge_header":
            p = tmp / "bomb.png"
            _png_header_only(p, 100_000, 100_000)
            also = "decompression-bomb"
        elif kind == "just_over_limit":
            p = tmp / "big.png"
            _png_header_only(p, 10_000, 9_000)  # 9e7 pixels: over Pillow's 89.5e6, under twice it
            also = "decompression-bomb"
        elif kind == "directory":
            p = tmp / "folder.jpg"
            p.mkdir()
            also = "directory"
        elif kind == "missing":
            p = tmp / "missing.jpg"
            also = "no such file"
        elif kind == "symlink_loop":
            p = tmp / "a.png"
            p.symlink_to(tmp / "b.png")
            (tmp / "b.png").symlink_to(p)
            also = "loop"
        elif kind == "too_small":
            p = tmp / "tiny.png"
            Image.fromarray(RNG.integers(0, 256, (8, 8, 3), dtype=np.uint8)).save(p)
            return expect_error(_load(p, 16), p, also="smaller")
        else:  # pragma: no cover
            raise AssertionError(kind)
        return expect_error(_load(p), p, also=also)

    return case


# ----------------------------------------------------------------------------- meshes


TET_V = [[0, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0, 1]]
TET_F = [[0, 2, 1], [0, 1, 3], [0, 3, 2], [1, 2, 3]]


def _off(path: Path, v, f) -> Path:
    path.write_text("OFF\n" + f"{len(v)} {len(f)} 0\n" + "".join(" ".join(map(str, x)) + "\n" for x in v)
                    + "".join(f"3 {a} {b} {c}\n" for a, b, c in f))
    return path


def _mesh(p: Path):
    from ntkgrid.data.meshes import load_mesh

    return lambda: load_mesh(p)


def bad_mesh(kind: str):
    def case(tmp: Path) -> Outcome:
        also = None
        if kind == "faces_only_obj":
            p = tmp / "faces.obj"
            p.write_text("f 1 2 3\nf 1 3 4\n")
            also = "no vertex"
        elif kind.startswith("random_"):
            p = tmp / f"random.{kind.split('_')[1]}"
            p.write_bytes(RNG.integers(0, 256, 4096, dtype=np.uint8).tobytes())
        elif kind == "zero_bytes":
            p = tmp / "zero.ply"
            p.write_bytes(b"")
            also = "empty"
        elif kind == "nan_vertex":
            p = _off(tmp / "nan.off", [[0, 0, 0], [1, 0, 0], ["nan", 1, 0], [0, 0, 1]], TET_F)
            also = "NaN"
        elif kind == "point_cloud":
            p = tmp / "cloud.ply"
            p.write_text("ply\nformat ascii 1.0\nelement vertex 3\nproperty float x\nproperty float y\n"
                         "property float z\nend_header\n0 0 0\n1 0 0\n0 1 0\n")
            also = "no faces"
        elif kind == "index_past_end":
            p = tmp / "index.obj"
            p.write_text("v 0 0 0\nv 1 0 0\nv 0 1 0\nf 1 2 9\n")
            also = "vertex"
        elif kind == "inside_out":
            p = _off(tmp / "inverted.off", TET_V, [f[::-1] for f in TET_F])
            also = "inside out"
        elif kind == "missing":
            p = tmp / "missing.stl"
            also = "no such file"
        elif kind == "directory":
            p = tmp / "folder.obj"
            p.mkdir()
            also = "directory"
        else:  # pragma: no cover
            raise AssertionError(kind)
        return expect_error(_mesh(p), p, also=also)

    return case


def latin1_obj(tmp: Path) -> Outcome:
    p = tmp / "tetra.obj"
    p.write_bytes(b"# caf\xe9\n" + b"".join(b"v %d %d %d\n" % tuple(v) for v in TET_V)
                  + b"".join(b"f %d %d %d\n" % tuple(i + 1 for i in f) for f in TET_F))
    return expect_ok(_mesh(p), lambda m: None if len(m.faces) == 4 and m.is_watertight else f"{len(m.faces)} faces")


def quad_obj(tmp: Path) -> Outcome:
    import trimesh

    box = trimesh.creation.box()
    quads = "".join(f"v {x} {y} {z}\n" for x, y, z in box.vertices)
    # the 12 triangles of trimesh's box, as given (OBJ may mix polygons; quads are triangulated)
    quads += "".join(f"f {a + 1} {b + 1} {c + 1}\n" for a, b, c in box.faces)
    p = tmp / "box.obj"
    p.write_text(quads)
    return expect_ok(_mesh(p), lambda m: None if m.is_watertight and abs(m.volume - 1.0) < 1e-9
                     else f"volume {m.volume}")


# ----------------------------------------------------------------------------- occupancy CLI

MICRO = ["--epochs", "1", "--pool-size", "300", "--eval-size", "50", "--resolution", "8", "--render-steps", "8",
         "--mc-resolution", "8", "--ntk-points", "4", "--hidden", "8", "--encodings", "baseline", "--no-progress"]


def occ_bad_arg(argv: list[str], names: str, also: str | None = None):
    def case(tmp: Path) -> Outcome:
        return cli("experiments.occupancy", ["--out", str(tmp / "o"), *argv], code=2, names=names, also=also)

    return case


def occ_out_is_file(tmp: Path) -> Outcome:
    f = tmp / "afile"
    f.write_text("x")
    out = cli("experiments.occupancy", ["--out", str(f)], code=2, names=str(f), also="is a file")
    if out.kind == "clear error" and f.read_text() != "x":
        return Outcome("damaged", "the file given as --out changed")
    return out


def occ_out_under_file(tmp: Path) -> Outcome:
    f = tmp / "afile"
    f.write_text("x")
    return cli("experiments.occupancy", ["--out", str(f / "sub")], code=2, names=str(f / "sub"), also="cannot write")


def occ_bad_mesh(tmp: Path) -> Outcome:
    p = tmp / "faces.obj"
    p.write_text("f 1 2 3\n")
    return cli("experiments.occupancy", ["--mesh", str(p), "--out", str(tmp / "o"), *MICRO], code=1, names=str(p),
               also="no vertex")


def _ball(tmp: Path, name: str = "ball.ply", box: bool = False) -> Path:
    import trimesh

    p = tmp / name
    (trimesh.creation.box(extents=(2.0, 1.0, 1.0)) if box else trimesh.creation.icosphere(subdivisions=2)).export(p)
    return p


def occ_rerun_other_lr(tmp: Path) -> Outcome:
    a = _ball(tmp)
    out = tmp / "run"
    first = run_cli("experiments.occupancy", ["--mesh", str(a), "--out", str(out), *MICRO])
    if first.rc != 0:
        return Outcome("traceback" if "Traceback" in first.err else "confusing", "first run failed: "
                       + first.err.strip().splitlines()[-1])
    before = digests(out, skip=("pools",))
    r = run_cli("experiments.occupancy", ["--mesh", str(a), "--out", str(out), *MICRO, "--lr", "0.5"])
    after = digests(out, skip=("pools",))
    changed = {k for k in before if after.get(k) != before[k]}
    if changed - {"results.json", "report.md"}:
        return Outcome("damaged", "changed: " + ", ".join(sorted(changed)))
    meshes = [m["name"] for m in json.loads((out / "results.json").read_text())["meshes"]]
    if len(meshes) != 1:
        return Outcome("damaged", f"results.json lists {meshes}")
    o = classify_error_run(r, code=1, names=None, also="different run")
    if o.kind != "clear error":
        return o
    return Outcome("preserved", "exit 1, one line; mesh folder and spectra byte-identical, results.json keeps the "
                   "mesh and adds the failure")


def occ_reorder(tmp: Path) -> Outcome:
    a, b = _ball(tmp), _ball(tmp, "box.ply", box=True)
    out = tmp / "run"
    r1 = run_cli("experiments.occupancy", ["--mesh", str(a), "--out", str(out), *MICRO])
    before = digests(out, skip=("pools",))
    r2 = run_cli("experiments.occupancy", ["--mesh", str(b), str(a), "--out", str(out), *MICRO])
    if r1.rc or r2.rc:
        return Outcome("confusing", f"exit {r1.rc}/{r2.rc}: " + (r1.err + r2.err).strip().splitlines()[-1])
    after = digests(out, skip=("pools",))
    kept = [k for k in before if "/" in k]
    if any(after.get(k) != before[k] for k in kept):
        return Outcome("damaged", "the first mesh's folder changed")
    res = json.loads((out / "results.json").read_text())
    spectra = json.loads((out / "spectra.json").read_text())
    if len(res["meshes"]) != 2 or spectra["baseline"]["end"]["count"] != 2:
        return Outcome("silent wrong", f"results {len(res['meshes'])} meshes, spectra over "
                       f"{spectra['baseline']['end']['count']}")
    return Outcome("preserved", "first mesh reused byte for byte; results.json and spectra cover both meshes")


def occ_diverges(tmp: Path) -> Outcome:
    a = _ball(tmp)
    return cli("experiments.occupancy", ["--mesh", str(a), "--out", str(tmp / "o"), *MICRO, "--ntk-points", "0",
                                         "--lr", "1e30"], code=1, names="baseline", also="diverged")


# ----------------------------------------------------------------------------- spectra and small CLIs


def _mlp():
    import jax
    import jax.numpy as jnp

    from ntkgrid import CoordinateMLP, Identity

    model = CoordinateMLP(encoding=Identity(), hidden=(8,), out_dim=1)
    return model, model.init(jax.random.PRNGKey(0), jnp.zeros((1, 2)))


def spectrum_x(kind: str):
    def case(tmp: Path) -> Outcome:
        from ntkgrid.spectrum import ntk_spectrum

        model, params = _mlp()
        x = {"empty": np.zeros((0, 2)), "nan": np.array([[0.1, np.nan], [0.2, 0.3]])}[kind]
        return expect_error(lambda: ntk_spectrum(model, params, x), "x", also="points" if kind == "empty" else "NaN")

    return case


def spectrum_nan_params(tmp: Path) -> Outcome:
    import jax

    from ntkgrid.spectrum import ntk_spectrum

    model, params = _mlp()
    params = jax.tree.map(lambda a: a * np.nan, params)
    return expect_error(lambda: ntk_spectrum(model, params, RNG.random((4, 2))), "kernel", also="NaN")


def damaged_npz(kind: str, reader: str):
    def case(tmp: Path) -> Outcome:
        p = tmp / "epoch_000002.npz"
        if kind == "garbage":
            p.write_bytes(RNG.integers(0, 256, 2000, dtype=np.uint8).tobytes())
        else:
            np.savez(p, groups=np.array(["total"]), **{"eigenvalues/total": np.ones(400)})
            p.write_bytes(p.read_bytes()[:500])
        if reader == "runfolder":
            from ntkgrid.training import load_spectra

            return expect_error(lambda: load_spectra(p), p, also="spectra file")
        from ntkgrid.occupancy.spectra import read_spectra_file

        return expect_error(lambda: read_spectra_file(p), p, also="spectra file")

    return case


def bench_labels_bad_mesh(tmp: Path) -> Outcome:
    p = tmp / "random.obj"
    p.write_bytes(RNG.integers(0, 256, 4096, dtype=np.uint8).tobytes())
    return cli("benchmarks.bench_labels", ["--mesh", str(p)], code=2, names=str(p), also="binary")


CASES: list[Case] = [
    Case("images/cmyk-jpeg", "images", "CMYK JPEG named .JPEG (ImageNet has these)", cmyk_jpeg),
    Case("images/cmyk-tiff", "images", "CMYK TIFF: cyan, and 50 % black", cmyk_tiff),
    Case("images/png-named-jpeg", "images", "PNG data in a .JPEG file", png_named_jpeg),
    Case("images/exif-rotated", "images", "JPEG with EXIF orientation 6 (rotate 90 clockwise)", exif_rotated),
    Case("images/png16-rgb", "images", "16-bit RGB PNG", png16_rgb),
    Case("images/png16-grey", "images", "16-bit grey PNG", png16_grey),
    Case("images/tiff16-rgb", "images", "16-bit RGB TIFF", tiff16_rgb),
    Case("images/float-tiff-01", "images", "float32 RGB TIFF, values in [0, 1]", float_tiff(1.0)),
    Case("images/float-tiff-255", "images", "float32 RGB TIFF, values in [0, 255]", float_tiff(255.0)),
    Case("images/float-tiff-negative", "images", "float32 RGB TIFF, values in [-1, 0]", float_tiff(-1.0)),
    Case("images/float-tiff-nan", "images", "float32 RGB TIFF with a NaN", float_tiff(1.0, nan=True)),
    Case("images/palette-transparent", "images", "palette PNG, transparent index", alpha_png("P")),
    Case("images/grey-alpha", "images", "grey+alpha PNG (LA), 20 % black", alpha_png("LA")),
    Case("images/rgba", "images", "opaque red RGBA PNG", alpha_png("RGBA")),
    Case("images/gif-animated", "images", "two-frame GIF", gif_first_frame),
    Case("images/bilevel", "images", "1-bit PNG", bilevel),
    Case("images/truncated-jpeg", "images", "JPEG cut in half", bad_image("truncated_jpeg")),
    Case("images/truncated-png", "images", "PNG cut in half", bad_image("truncated_png")),
    Case("images/zero-bytes", "images", "0-byte .png", bad_image("zero_bytes")),
    Case("images/text-as-png", "images", "text file named .png", bad_image("text_as_png")),
    Case("images/huge-header", "images", "PNG header claiming 100000x100000 px", bad_image("huge_header")),
    Case("images/just-over-limit", "images", "PNG header 10000x9000 px (1x-2x Pillow's limit)",
         bad_image("just_over_limit")),
    Case("images/directory", "images", "a folder named .jpg", bad_image("directory")),
    Case("images/missing", "images", "a path that does not exist", bad_image("missing")),
    Case("images/symlink-loop", "images", "two symbolic links pointing at each other", bad_image("symlink_loop")),
    Case("images/too-small", "images", "8x8 image, size 16 asked", bad_image("too_small")),
    Case("meshes/faces-only-obj", "meshes", "OBJ with face lines and no vertices", bad_mesh("faces_only_obj")),
    Case("meshes/random-obj", "meshes", "4 KiB of random bytes named .obj", bad_mesh("random_obj")),
    Case("meshes/random-ply", "meshes", "4 KiB of random bytes named .ply", bad_mesh("random_ply")),
    Case("meshes/random-stl", "meshes", "4 KiB of random bytes named .stl", bad_mesh("random_stl")),
    Case("meshes/random-off", "meshes", "4 KiB of random bytes named .off", bad_mesh("random_off")),
    Case("meshes/zero-bytes", "meshes", "0-byte .ply", bad_mesh("zero_bytes")),
    Case("meshes/nan-vertex", "meshes", "OFF with a NaN vertex", bad_mesh("nan_vertex")),
    Case("meshes/point-cloud", "meshes", "PLY with vertices only", bad_mesh("point_cloud")),
    Case("meshes/index-past-end", "meshes", "OBJ face index 9 of 3 vertices", bad_mesh("index_past_end")),
    Case("meshes/inside-out", "meshes", "closed tetrahedron, every face inwards", bad_mesh("inside_out")),
    Case("meshes/missing", "meshes", "a path that does not exist", bad_mesh("missing")),
    Case("meshes/directory", "meshes", "a folder named .obj", bad_mesh("directory")),
    Case("meshes/latin1-obj", "meshes", "OBJ with a Latin-1 comment", latin1_obj),
    Case("meshes/box-obj", "meshes", "unit box OBJ", quad_obj),
    Case("meshes/bench-labels-bad-mesh", "meshes", "bench_labels --mesh <random bytes .obj>", bench_labels_bad_mesh),
    Case("occupancy/seed-negative", "occupancy", "--seed -1", occ_bad_arg(["--seed", "-1"], "--seed")),
    Case("occupancy/ntk-points-negative", "occupancy", "--ntk-points -3",
         occ_bad_arg(["--ntk-points", "-3"], "--ntk-points")),
    Case("occupancy/hidden-zero", "occupancy", "--hidden 0", occ_bad_arg(["--hidden", "0"], "--hidden")),
    Case("occupancy/lr-nan", "occupancy", "--lr nan", occ_bad_arg(["--lr", "nan"], "--lr", "finite")),
    Case("occupancy/lr-inf", "occupancy", "--lr inf", occ_bad_arg(["--lr", "inf"], "--lr", "finite")),
    Case("occupancy/lr-zero", "occupancy", "--lr 0", occ_bad_arg(["--lr", "0"], "--lr")),
    Case("occupancy/epochs-zero", "occupancy", "--epochs 0", occ_bad_arg(["--epochs", "0"], "--epochs")),
    Case("occupancy/mc-resolution-1", "occupancy", "--mc-resolution 1",
         occ_bad_arg(["--mc-resolution", "1"], "--mc-resolution")),
    Case("occupancy/view-nan", "occupancy", "--view nan 0", occ_bad_arg(["--view", "nan", "0"], "--view")),
    Case("occupancy/bad-config-json", "occupancy", "--config-json fourier=<missing file>",
         occ_bad_arg(["--config-json", "fourier=/nonexistent/x.json"], "x.json")),
    Case("occupancy/out-is-file", "occupancy", "--out <an existing file>", occ_out_is_file),
    Case("occupancy/out-under-file", "occupancy", "--out <file>/sub (cannot be created)", occ_out_under_file),
    Case("occupancy/bad-mesh", "occupancy", "--mesh <faces-only OBJ>", occ_bad_mesh),
    Case("occupancy/diverges", "occupancy", "--lr 1e30 (training diverges)", occ_diverges),
    Case("occupancy/rerun-other-lr", "occupancy", "finished run, then a rerun with another --lr",
         occ_rerun_other_lr),
    Case("occupancy/reordered-meshes", "occupancy", "--mesh A, then --mesh B A into the same --out", occ_reorder),
    Case("spectrum/empty-x", "spectrum", "ntk_spectrum on x of shape (0, 2)", spectrum_x("empty")),
    Case("spectrum/nan-x", "spectrum", "ntk_spectrum on x with a NaN", spectrum_x("nan")),
    Case("spectrum/nan-params", "spectrum", "ntk_spectrum of a model with NaN parameters", spectrum_nan_params),
    Case("spectrum/garbage-npz", "spectrum", "random bytes as a run's spectra/epoch_*.npz",
         damaged_npz("garbage", "runfolder")),
    Case("spectrum/truncated-npz", "spectrum", "truncated spectra/epoch_*.npz", damaged_npz("truncated", "runfolder")),
    Case("spectrum/garbage-occupancy-npz", "spectrum", "random bytes as an occupancy ntk/epoch_*.npz",
         damaged_npz("garbage", "occupancy")),
    Case("spectrum/ntk-evolution-no-points", "spectrum", "ntk_evolution --ntk-points 0",
         lambda tmp: cli("experiments.ntk_evolution", ["--ntk-points", "0", "--out", str(tmp / "o")], code=2,
                         names="--ntk-points")),
    Case("spectrum/bench-sweep-no-images", "spectrum", "bench_sweep --images 0",
         lambda tmp: cli("benchmarks.bench_sweep", ["--images", "0"], code=2, names="--images")),
]
