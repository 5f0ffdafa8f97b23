"""examples/colab_quickstart.ipynb runs top to bottom, offline, on this machine's backend.

The install cell detects Colab and does nothing here; the notebook trains on a 24-px photo
(``NTKGRID_QUICKSTART_SIDE``) so that the whole run stays within a minute on a CPU.
"""

from __future__ import annotations

from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")

NOTEBOOK = Path(__file__).resolve().parents[1] / "examples" / "colab_quickstart.ipynb"


def _outputs(nb) -> str:
    text = []
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            text.append(out.get("text", "") or "".join(out.get("data", {}).get("text/plain", "")))
    return "\n".join(text)


@pytest.mark.slow
def test_quickstart_notebook_runs_offline_and_reports_its_figures(tmp_path, monkeypatch):
    monkeypatch.setenv("NTKGRID_QUICKSTART_SIDE", "24")
    monkeypatch.delenv("MPLBACKEND", raising=False)  # the kernel's inline backend shows the figures
    nb = nbformat.read(NOTEBOOK, as_version=4)
    client = nbclient.NotebookClient(nb, timeout=600, kernel_name="python3",
                                     resources={"metadata": {"path": str(tmp_path)}})
    client.execute()  # raises CellExecutionError, naming the cell, if any cell fails

    text = _outputs(nb)
    assert "(576, 2) (576, 3)" in text
    assert "grid kernel off-diagonal share" in text and "stated: MPE >= other at" in text
    verdicts = {line.split(":")[0]: line.rsplit(": ", 1)[-1] for line in text.splitlines() if "MPE >= other at" in line}
    assert verdicts["fan_in_matched"] == "holds"  # the positive control, at initialisation
    assert verdicts["own_no_grid"] == "holds (true by construction)"
    assert "fan-in-matched top eigenvalues" in text
    assert "PSNR" in text and "dB" in text
    images = [o for c in nb.cells for o in c.get("outputs", []) if "image/png" in o.get("data", {})]
    assert len(images) == 2  # the spectra at initialisation; the regressed image with the spectra
