"""docs/notebooks/tour.ipynb runs top to bottom on an offline kernel of this venv, and its
results show up as pictures."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")

TOUR = Path(__file__).resolve().parents[2] / "docs" / "notebooks" / "tour.ipynb"
LIMIT_S = 180  # the bound for the whole tour, in the kernel's CPU seconds
WALL_S = 600  # on a machine shared with other jobs the wall clock is a loose, second bound


@pytest.mark.slow
def test_tour_notebook_runs_and_shows_pictures(tmp_path, monkeypatch):
    nb = nbformat.read(TOUR, as_version=4)
    n_code = sum(c.cell_type == "code" for c in nb.cells)
    # the kernel keeps Jupyter's inline backend (the suite's MPLBACKEND=Agg is for this
    # process), and convscope's drawing leaves it so: the user's own plots still show
    monkeypatch.delenv("MPLBACKEND", raising=False)
    nb.cells.append(nbformat.v4.new_code_cell(
        "import matplotlib\nassert 'inline' in matplotlib.get_backend(), matplotlib.get_backend()"))
    nb.cells.append(nbformat.v4.new_code_cell(  # the kernel's own CPU time, load-independent
        "import resource\nr = resource.getrusage(resource.RUSAGE_SELF)\nprint(r.ru_utime + r.ru_stime)"))
    shutil.copy(TOUR, tmp_path / TOUR.name)
    started = time.perf_counter()
    # offline: the suite's caches (CONVSCOPE_CACHE, CONVSCOPE_DATA) are inherited; mnist5k
    # and the samples are bundled, and the style backbone is a random one
    nbclient.NotebookClient(nb, timeout=WALL_S, kernel_name="python3",
                            resources={"metadata": {"path": str(tmp_path)}}).execute()
    seconds = time.perf_counter() - started
    cpu = float(nb.cells[-1].outputs[0]["text"])
    print(f"tour: {cpu:.1f} s of kernel CPU, {seconds:.1f} s wall")
    assert cpu < LIMIT_S and seconds < WALL_S, f"the tour took {cpu:.0f} s CPU, {seconds:.0f} s"
    code = [c for c in nb.cells if c.cell_type == "code"][:n_code]
    pictures = ["image/png" in o.get("data", {}) for c in code for o in c.outputs
                if o.output_type == "execute_result"]
    pages = ["text/html" in o.get("data", {}) for c in code for o in c.outputs
             if o.output_type == "execute_result"]
    # every cell ends with a result: all but the two text tables show a PNG
    assert len(pictures) == n_code and sum(pictures) == n_code - 2 and sum(pages) >= 2
