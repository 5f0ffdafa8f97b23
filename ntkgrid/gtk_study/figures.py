"""Figures of the GTK study (matplotlib, written as PNG files): panel (a)'s spectra, panel
(b)'s bound maps, panel (c)'s error maps and occupancy slices."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def plot_spectrum_1d(curves, eigs, res, path):
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(1, 2, figsize=(10, 3.6))
    for name, (f, s) in curves.items():
        ax[0].semilogy(f, np.maximum(s, 1e-300), label=name)
        ax[1].semilogy(np.arange(1, eigs[name].size + 1), np.maximum(eigs[name], 1e-300), label=name)
    ax[0].axvline((res - 1) / 2, color="grey", ls=":", label="grid Nyquist")
    ax[0].set(xlabel="frequency (cycles per unit)", ylabel="v^H G v / N", title="(a) GTK energy per Fourier mode, 1D")
    top = max(float(e[0]) for e in eigs.values())
    floor = max(e.size for e in eigs.values()) * np.finfo(np.float64).eps * top  # rounding level
    last = max(int(np.sum(e > floor)) for e in eigs.values())
    ax[1].axhline(floor, color="grey", ls=":", label="N eps lambda_max")
    ax[1].set(xlabel="index", ylabel="eigenvalue", title="GTK eigenvalues", ylim=(floor / 10, 3 * top),
              xlim=(0, 1.25 * last))
    for a in ax:
        a.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot_spectrum_2d(maps, res, path):
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(1, len(maps), figsize=(4.6 * len(maps), 4))
    logs = {k: np.log10(np.maximum(s, 1e-300)) for k, (_, s) in maps.items()}
    hi = max(v.max() for v in logs.values())
    for a, (name, (f, _)) in zip(np.atleast_1d(ax), maps.items(), strict=True):
        im = a.imshow(logs[name].T, origin="lower", extent=(f[0], f[-1], f[0], f[-1]), vmin=hi - 8, vmax=hi,
                      cmap="magma")
        nyq = (res - 1) / 2
        a.plot([-nyq, nyq, nyq, -nyq, -nyq], [-nyq, -nyq, nyq, nyq, -nyq], "w:", lw=1)
        a.set(title=f"{name}: log10 v^H G v / N", xlabel="nu_0 (cycles/unit)", ylabel="nu_1")
        fig.colorbar(im, ax=a, fraction=0.046)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot_bounds(rows: dict, labels, path):
    """One row per ``{title: {"dense": map, "mulfagrid": map}}``: both bounds and their difference."""
    import matplotlib.pyplot as plt

    ext = (labels[0], labels[-1], labels[0], labels[-1])
    fig, ax = plt.subplots(len(rows), 3, figsize=(13, 3.8 * len(rows)), squeeze=False)
    for r, (title, maps) in enumerate(rows.items()):
        hi = max(m.max() for m in maps.values())
        for a, (name, m) in zip(ax[r], maps.items(), strict=False):  # 3 axes, 2 maps (3rd: difference)
            im = a.imshow(m, origin="lower", extent=ext, vmin=0, vmax=hi, cmap="viridis")
            a.set(title=f"(b) bound, {name} ({title})", xlabel="Y1", ylabel="Y2")
            fig.colorbar(im, ax=a, fraction=0.046)
        d = maps["mulfagrid"] - maps["dense"]
        lim = float(np.abs(d).max()) or 1.0
        im = ax[r, 2].imshow(d, origin="lower", extent=ext, cmap="RdBu_r", vmin=-lim, vmax=lim)
        ax[r, 2].set(title="mulfagrid - dense (blue: MulFAGrid tighter)", xlabel="Y1", ylabel="Y2")
        fig.colorbar(im, ax=ax[r, 2], fraction=0.046)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot_error_maps(image: dict, path: Path) -> None:
    import matplotlib.pyplot as plt

    runs = image["runs"]
    img = image["target"]
    errs = {n: np.mean(np.abs(r["_pred"] - img), axis=-1) for n, r in runs.items()}
    hi = max(float(np.percentile(e, 99.5)) for e in errs.values()) or 1.0
    fig, ax = plt.subplots(2, len(runs) + 1, figsize=(3.2 * (len(runs) + 1), 6.4))
    ax[0, 0].imshow(img)
    ax[0, 0].set_title("ground truth")
    ax[1, 0].axis("off")
    for j, (name, r) in enumerate(runs.items(), start=1):
        ax[0, j].imshow(r["_pred"])
        ax[0, j].set_title(f"{name}\n{r['psnr']:.2f} dB")
        im = ax[1, j].imshow(errs[name], cmap="inferno", vmin=0, vmax=hi)
        ax[1, j].set_title("(c) |error|, mean over RGB")
    for a in ax.ravel():
        a.set_xticks([])
        a.set_yticks([])
    fig.colorbar(im, ax=ax[1, :].tolist(), fraction=0.02)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_slices(occ: dict, path: Path) -> None:
    import matplotlib.pyplot as plt

    runs = occ["runs"]
    truth = occ["slice_truth"]
    fig, ax = plt.subplots(1, len(runs) + 1, figsize=(3.2 * (len(runs) + 1), 3.9))
    ax[0].imshow(truth.T, origin="lower", cmap="gray")
    ax[0].set_title("ground truth, z = 0.5\n(green: both, red: false +, blue: false -)", fontsize=8)
    for a, (name, r) in zip(ax[1:], runs.items(), strict=True):
        s = r["_slice"]
        rgb = np.stack([s & ~truth, s & truth, ~s & truth], -1).astype(float)  # red: false +, blue: false -
        a.imshow(np.transpose(rgb, (1, 0, 2)), origin="lower")
        a.set_title(f"{name}\nIoU {r['iou_uniform']:.3f}")
    for a in ax:
        a.set_xticks([])
        a.set_yticks([])
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
