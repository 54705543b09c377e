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


def _jpeg(array: np.ndarray, orientation: int | None = None) -> bytes:
    import io

    from PIL import Image

    buf = io.BytesIO()
    exif = Image.Exif()
    if orientation:
        exif[0x0112] = orientation
    Image.fromarray(array).save(buf, "JPEG", quality=85, exif=exif)
    return buf.getvalue()


def test_a_photo_is_looked_at_upright_and_at_most_1600_px(clf, photos):
    """A large JPEG is decoded reduced (under the per-upload pixel bound that its full size
    would pass), and a photo turned by its EXIF orientation keeps its shape upright."""
    from PIL import Image

    bench = Workbench(clf, None, max_upload_pixels=4_000_000)
    big = np.asarray(Image.fromarray(photos["astronaut"]).resize((4000, 3000)))
    photo = bench.decode_photo(_jpeg(big))                       # 12 MP, drafted to 3 MP
    assert photo.shape == (1200, 1600, 3) and photo.dtype == np.uint8
    upright = np.asarray(Image.fromarray(photos["astronaut"]).resize((900, 1200)))
    stored = np.ascontiguousarray(np.rot90(upright))             # orientation 6 turns it back
    photo = bench.decode_photo(_jpeg(stored, orientation=6))
    assert photo.shape == (1200, 900, 3)
    assert np.abs(photo.astype(int) - upright).mean() < 8
    with pytest.raises(ImageError) as info:
        bench.decode_photo(b"just some text\n" * 20)
    assert info.value.kind == "format"


def test_the_photo_view_opens_its_models_once_and_keeps_pictures_small(clf, photos):
    """The scene models open on first use, once per workbench; the combined picture keeps
    the drawing's size (at most 1280 px and its caption), each part at most 640 px."""
    import base64
    import io

    from PIL import Image

    from convscope.render.workbench import PART_SIDE

    bench = Workbench(clf, None)
    assert not bench.cache
    upright = np.asarray(Image.fromarray(photos["astronaut"]).resize((1800, 1800)))
    out = bench.scene(_jpeg(upright))
    assert out["photo"] == {"width": 1600, "height": 1600}
    assert out["text"].startswith("Image may contain: 1 person")
    assert out["faces"]["width"] == 1600 and out["faces"]["count"] == 1

    def size(uri):
        return Image.open(io.BytesIO(base64.b64decode(uri.split(",", 1)[1]))).size

    w, h = size(out["picture"])
    assert 1280 <= w <= 1320 and 1280 <= h <= 1400
    assert [max(size(p["src"])) for p in out["parts"]] == [PART_SIDE] * 4
    describer = bench.describer()
    pose = bench.scene_model("movenet-lightning")
    again = bench.describe(photos["coffee"])
    assert bench.describer() is describer and bench.scene_model("movenet-lightning") is pose
    assert set(again) == {"text", "concepts", "thresholds", "imagenet_top"}
    assert "cup" in again["text"]
