"""The workbench: the model, its data and the views the report and the web app share, with
convscope errors instead of HTTP statuses."""

from __future__ import annotations

import numpy as np
import pytest

import convscope
from convscope.errors import ImageError, UsageError
from convscope.render.report import ReportConfig, ReportContext
from convscope.render.workbench import NotFound, OutOfRange, Workbench


@pytest.fixture(scope="module")
def clf(digits_model):
    return convscope.load(digits_model)


@pytest.fixture(scope="module")
def dataset():
    return convscope.load_dataset("digits")


def test_what_cannot_be_answered_is_a_convscope_error(clf, dataset):
    """No HTTP in the workbench: the web app maps these errors to 404, 422 and 415."""
    empty = Workbench(clf, None)
    assert empty.test_count == 0 and empty.info()["test_images"] == 0
    with pytest.raises(NotFound, match="`data` naming a dataset"):
        empty.test_image(0)
    with pytest.raises(NotFound, match="t-SNE map needs test images"):
        empty.tsne()
    bench = Workbench(clf, dataset)
    n = len(dataset.test_images)
    with pytest.raises(NotFound, match=f"indices are 0-{n - 1}"):
        bench.test_image(n)
    with pytest.raises(OutOfRange, match="count 1-500") as info:
        bench.test_page(0, 501)
    assert isinstance(info.value, UsageError)
    with pytest.raises(ImageError) as info:
        bench.decode(b"just some text\n" * 20)
    assert info.value.kind == "format"
    assert bench.test_page(10, 2)["items"][0]["index"] == 10


def test_the_report_and_the_app_share_one_workbench(clf, dataset):
    """The t-SNE map and the challenges are computed once, in the workbench, whether the
    report draws them or the app sends them; the report's context holds one."""
    ctx = ReportContext(clf, dataset, "test",
                        ReportConfig(n=120, challenge_images=30, seed=3).resolved())
    bench = ctx.bench
    assert isinstance(bench, Workbench) and ctx.dataset is bench.dataset
    assert (bench.tsne_n, bench.challenge_n, bench.seed) == (120, 30, 3)
    e = bench.embedding()
    assert bench.embedding() is e and e.config.n == 120
    points = bench.tsne()["points"]
    assert [p[2] for p in points] == [int(i) for i in e.indices]
    assert [p[3] for p in points] == [int(v) for v in e.labels]
    app_bench = Workbench(clf, dataset, tsne_n=120, challenge_n=30, seed=3)
    assert np.allclose(app_bench.embedding().coords, e.coords)
    r = bench.challenge_result()
    view = bench.challenges()
    assert view["n"] == r.n == 30 and view["scores"] == r.main.group_scores()
    assert view["curves"].startswith("data:image/png;base64,")
