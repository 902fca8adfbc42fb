"""notebooks/quickstart.ipynb runs top to bottom against data from a simulator run.

The notebook is executed as committed (from notebooks/, kernel python3 = this virtualenv's
Python, matplotlib backend Agg) with HYPERFLUX_INFLUX_URL / HYPERFLUX_INFLUX_DB pointing at the
run's database. A last cell, added here only, reports which figures were drawn.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path

import nbformat
import pytest
from jupyter_client.kernelspec import KernelSpecManager
from jupyter_client.manager import AsyncKernelManager
from nbclient import NotebookClient

from tests.data_run import DataRun, data_run, influx_env  # noqa: F401 (fixture)

NOTEBOOK = Path(__file__).resolve().parents[1] / "notebooks" / "quickstart.ipynb"
FIGURES = {"liq_heatmap": "liq_levels", "cvd": "cvd", "funding": "asset_ctx"}
"""Figure label -> the measurement it needs."""

PROBE = """import json
import sys

import matplotlib
import matplotlib.pyplot as plt
from matplotlib.collections import QuadMesh

heatmap = {}
if "liq_heatmap" in plt.get_figlabels():
    ax = plt.figure("liq_heatmap").axes[0]
    (mesh,) = [c for c in ax.collections if isinstance(c, QuadMesh)]
    cells = mesh.get_array()
    heatmap = {
        "shape": list(mesh.get_coordinates().shape),
        "coloured": int(cells.count()),
        "lines": [line.get_label() for line in ax.get_lines()],
        "price_range": list(ax.get_ylim()),
        "mark": [float(v) for v in ax.get_lines()[0].get_ydata()] if ax.get_lines() else [],
    }

print(json.dumps({
    "python": sys.executable,
    "backend": matplotlib.get_backend(),
    "figures": [plt.figure(n).get_label() for n in plt.get_fignums()],
    "heatmap": heatmap,
}))"""


@dataclass(frozen=True)
class Executed:
    notebook: nbformat.NotebookNode
    probe: dict
    """What the last cell saw: the kernel's Python, the backend, the labels of the figures."""

    def printed(self) -> str:
        return "".join(
            output.get("text", "")
            for cell in self.notebook.cells
            if cell.cell_type == "code"
            for output in cell.outputs
            if output.output_type == "stream" and output.name == "stdout"
        )


def kernel_manager() -> AsyncKernelManager:
    """Kernel python3 from this interpreter's own kernel folder (ipykernel's spec, whose
    `python` jupyter_client runs as sys.executable): never another python3 kernel of the user's
    or the system's."""
    kernels = Path(sys.prefix, "share", "jupyter", "kernels")
    specs = KernelSpecManager(kernel_dirs=[str(kernels)])
    return AsyncKernelManager(kernel_name="python3", kernel_spec_manager=specs)


@pytest.fixture(scope="module")
def executed(data_run: DataRun) -> Executed:  # noqa: F811
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    notebook.cells.append(nbformat.v4.new_code_cell(PROBE))
    client = NotebookClient(
        notebook,
        km=kernel_manager(),
        kernel_name="python3",
        timeout=120,
        resources={"metadata": {"path": str(NOTEBOOK.parent)}},
    )
    env = influx_env(data_run) | {"MPLBACKEND": "Agg", "HYPERFLUX_COIN": data_run.coin}
    client.execute(env=env)  # raises CellExecutionError, with the cell and its traceback
    probe = json.loads(notebook.cells[-1].outputs[-1]["text"])
    return Executed(notebook, probe)


def test_the_committed_notebook_has_no_outputs():
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    nbformat.validate(notebook)
    for cell in notebook.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None, cell.source[:80]


def test_the_notebook_runs_top_to_bottom_in_this_virtualenv(executed: Executed):
    assert executed.probe["python"] == sys.executable
    assert executed.probe["backend"].lower() == "agg"
    errors = [
        output
        for cell in executed.notebook.cells
        if cell.cell_type == "code"
        for output in cell.outputs
        if output.output_type == "error"
    ]
    assert errors == []
    assert "InfluxDB http://127.0.0.1:" in executed.printed()


def test_the_notebook_draws_every_figure(executed: Executed, data_run: DataRun):  # noqa: F811
    drawn = set(executed.probe["figures"])
    missing = {label: m for label, m in FIGURES.items() if label not in drawn}
    if missing:
        empty = sorted(m for m in missing.values() if m not in data_run.measurements)
        pytest.fail(
            f"figures not drawn: {', '.join(sorted(missing))}; measurements without points: "
            f"{', '.join(empty) or 'none'}; the notebook said:\n{executed.printed()}",
            pytrace=False,
        )


def test_the_heatmap_is_time_by_price_with_the_mark_over_it(executed: Executed):
    """Rows are price levels to scale (y: USD), columns minutes; some cells coloured (USD at a
    level), and the mark price drawn over them on the same price axis."""
    heatmap = executed.probe["heatmap"]
    if not heatmap:
        pytest.skip("no heatmap drawn (test_the_notebook_draws_every_figure says why)")
    rows, columns, _ = heatmap["shape"]  # mesh vertices: (levels + 1) x (minutes + 1) x 2
    assert rows >= 2 and columns >= 2
    assert heatmap["coloured"] > 0
    assert heatmap["lines"] == ["mark price"]
    low, high = heatmap["price_range"]
    assert 0 < low < high  # prices, not level indices
    assert heatmap["mark"] and all(low <= mark <= high for mark in heatmap["mark"])
