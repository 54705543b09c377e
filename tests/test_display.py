"""Every result of the Python API shows itself in Jupyter as a picture (or a page, or a
table), through IPython's own display formatter, and has a ``figure()``."""

from __future__ import annotations

import io

import numpy as np
import pytest

import convscope
from convscope.data import load_dataset
from convscope.inspect.synthesis.visualize import VisualizeConfig, class_images

IPython = pytest.importorskip("IPython")
from IPython.core.formatters import DisplayFormatter  # noqa: E402

PNG = b"\x89PNG\r\n\x1a\n"
TINY_STYLE = "random-multiscale:filters=16"


@pytest.fixture(scope="module")
def clf(digits_model):
    return convscope.load(digits_model)


@pytest.fixture(scope="module")
def digit():
    return load_dataset("digits").test_images[0]


def shown(obj) -> dict:
    """What a notebook receives for ``obj`` as a cell's last expression."""
    data, _ = DisplayFormatter().format(obj)
    return data


def decoded(png: bytes) -> np.ndarray:
    from PIL import Image

    return np.asarray(Image.open(io.BytesIO(png)).convert("RGB"))


def check_picture(obj, exact: bool = False) -> None:
    """A non-empty PNG (what a notebook shows before the dataclass's text), and a figure()
    that returns a matplotlib Figure without leaving it open in pyplot."""
    import matplotlib.pyplot as plt
    from matplotlib.figure import Figure

    data = shown(obj)
    png = data.get("image/png")
    assert png and png.startswith(PNG), sorted(data)
    picture = decoded(png)
    assert min(picture.shape[:2]) >= 16 and picture.std() > 0
    if exact:  # a mosaic is shown pixel for pixel, small ones enlarged by whole pixels
        rendered = obj.render()
        rendered = np.repeat(rendered, 3, axis=2) if rendered.shape[-1] == 1 else rendered
        zoom = picture.shape[0] // rendered.shape[0]
        assert picture.shape[:2] == (zoom * rendered.shape[0], zoom * rendered.shape[1])
        assert np.array_equal(picture[::zoom, ::zoom], rendered)
        assert zoom == max(1, 128 // max(rendered.shape[:2]))
    before = plt.get_fignums()
    fig = obj.figure()
    assert isinstance(fig, Figure) and plt.get_fignums() == before
    buf = io.BytesIO()
    fig.savefig(buf, format="png")  # still drawable after being detached from pyplot
    assert buf.getvalue().startswith(PNG)


def test_evaluation(clf):
    check_picture(clf.evaluate("digits"))


def test_attribution_and_faithfulness(clf, digit):
    a = convscope.explain(clf, digit, "occlusion", window=4)
    check_picture(a)
    r = convscope.faithfulness(clf, "digits", n=3, steps=4, methods=("saliency",))
    check_picture(r)


def test_views_show_their_mosaic_pixel_for_pixel(clf, digit):
    check_picture(convscope.filters(clf), exact=True)
    check_picture(convscope.activations(clf, digit), exact=True)
    check_picture(convscope.neighbors(clf, "digits", k=3, queries=4), exact=True)
    check_picture(convscope.embed(clf, "digits", method="pca", n=40), exact=True)
    check_picture(convscope.patches(clf, "digits", channels=range(2), top=2), exact=True)


def test_class_images_and_dream(clf, digit):
    res = class_images(clf, ["0", "1"], VisualizeConfig(steps=3), progress=False)
    check_picture(res)
    d = convscope.dream(clf, digit, convscope.DreamConfig(octaves=1, steps=2), progress=False)
    check_picture(d, exact=True)
    assert d.render().shape == (*digit.shape[1:], digit.shape[0])


def test_styled_image():
    r = convscope.stylize("sample:chelsea", "sample:ihc", size=24, steps=2, backbone=TINY_STYLE,
                          progress=False)
    check_picture(r, exact=True)


def test_report_shows_its_page(clf):
    from matplotlib.figure import Figure

    report = convscope.build_report(clf, "digits", sections=("accuracy",), progress=False)
    data = shown(report)
    assert "image/png" not in data  # the page is the picture
    html = data["text/html"]
    assert html.startswith("<iframe srcdoc=") and "&lt;html" in html.lower()
    assert isinstance(report.figure(), Figure)


def test_tables_and_arithmetic_show_their_text(clf):
    from html import escape

    r = convscope.conv_arithmetic(convscope.Volume(32, 32, 3), filters=10, size=5, stride=1,
                                  pad=2)
    table, layers = convscope.summarize(clf), convscope.list_layers(clf)
    for obj, text in ((r, r.explain()), (table, table.format()), (layers, layers.format())):
        assert shown(obj)["text/html"] == f"<pre>{escape(text)}</pre>"
    assert "32x32x10" in r.explain()


def test_display_imports_no_matplotlib_or_render_at_module_level():
    """The inspect layer imports display.py; drawing code is imported inside the methods."""
    import ast

    import convscope.display

    tree = ast.parse(open(convscope.display.__file__).read())
    top = [n for n in tree.body if isinstance(n, (ast.Import, ast.ImportFrom))]
    names = [a.name for n in top if isinstance(n, ast.Import) for a in n.names]
    names += [n.module for n in top if isinstance(n, ast.ImportFrom)]
    assert not [m for m in names if m.startswith(("matplotlib", "convscope.render"))], names
