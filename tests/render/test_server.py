"""The web app through FastAPI's TestClient: answers, refusals, and the bad-image corpus."""

from __future__ import annotations

import base64
import io
import re
import sys

import numpy as np
import pytest
from PIL import Image

import convscope
from convscope.render.server import ServeConfig, create_app
from convscope.scene.describe import FACE_THRESHOLDS
from tests.corpus import build_corpus

pytest.importorskip("fastapi.testclient")


@pytest.fixture(scope="module")
def clf(digits_model):
    return convscope.load(digits_model)


@pytest.fixture(scope="module")
def dataset():
    return convscope.load_dataset("digits")


@pytest.fixture(scope="module")
def client(clf, dataset):
    from fastapi.testclient import TestClient

    app = create_app(clf, dataset, ServeConfig(max_upload_bytes=200_000, model="digits-model"))
    with TestClient(app, base_url="http://127.0.0.1:8000") as c:
        yield c


def png_bytes(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, "PNG")
    return buf.getvalue()


def decoded(uri: str) -> np.ndarray:
    assert uri.startswith("data:image/png;base64,")
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(uri.split(",", 1)[1]))))


def test_the_page_is_one_offline_document(client):
    r = client.get("/")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    page = r.text
    # nothing fetched from anywhere else: no URL in a src or href, no external script
    assert not re.search(r"""(src|href)\s*=\s*["'](https?:)?//""", page)
    assert "<script src" not in page and "@import" not in page
    assert 'id="file"' in page and 'id="drop"' in page
    csp = r.headers["content-security-policy"]
    assert "default-src 'none'" in csp and "connect-src 'self'" in csp
    assert r.headers["x-content-type-options"] == "nosniff"
    for path in ("/docs", "/redoc", "/openapi.json"):  # these would load a CDN's scripts
        assert client.get(path).status_code == 404


def test_info(client, clf, dataset):
    info = client.get("/api/info").json()
    assert info["classes"] == clf.classes and info["test_images"] == len(dataset.test_images)
    assert info["methods"] == convscope.list_methods() and info["model"] == "digits-model"


def test_upload_gives_the_models_top5_and_an_overlay_per_method(client, clf, dataset):
    image = dataset.test_images[3, 0].numpy()                      # (8, 8) uint8
    big = np.kron(image, np.ones((6, 6), np.uint8))                # a 48x48 upload
    r = client.post("/api/upload", content=png_bytes(big))
    assert r.status_code == 200, r.text
    out = r.json()
    # the oracle: the classifier's own probabilities for the same file
    p = clf.predict_proba(clf.as_batch(png_bytes(big)))[0]
    order = np.argsort(-p, kind="stable")[:5]
    assert [t["label"] for t in out["top5"]] == [clf.classes[i] for i in order]
    assert [t["p"] for t in out["top5"]] == pytest.approx(p[order], abs=1e-4)
    assert out["target"] == out["top5"][0]["label"]
    assert [o["method"] for o in out["overlays"]] == convscope.list_methods()
    for o in out["overlays"]:
        pixels = decoded(o["src"])
        assert pixels.shape[:2] == (8, 8) and pixels.std() > 0, o["method"]
    assert decoded(out["image"]).shape[:2] == (8, 8)


def test_browsing_test_images_by_index(client, dataset):
    page = client.get("/api/test?start=10&count=5").json()
    assert page["total"] == len(dataset.test_images)
    assert [it["index"] for it in page["items"]] == list(range(10, 15))
    assert page["items"][0]["label"] == dataset.classes[int(dataset.test_labels[10])]
    png = client.get("/api/test/10/image.png")
    assert png.headers["content-type"] == "image/png"
    assert np.array_equal(np.asarray(Image.open(io.BytesIO(png.content))),
                          dataset.test_images[10, 0].numpy())
    item = client.get("/api/test/10").json()
    assert item["index"] == 10 and item["label"] == page["items"][0]["label"]
    assert len(item["top5"]) == 5 and len(item["overlays"]) == 5


def test_neighbours_of_a_test_image_equal_issue_4s_search(client, clf, dataset):
    """The app's neighbours are the same search as `convscope neighbors` (whose knn is
    tested against scikit-learn): the nearest training images by features and by pixels."""
    from convscope.inspect.features import extract
    from convscope.inspect.layers import choose_layer
    from convscope.inspect.neighbors import knn

    item = client.get("/api/test/7").json()
    nb = item["neighbours"]
    layer = choose_layer(clf, None, "neighbors")
    assert nb["layer"] == layer and nb["database"] == len(dataset.train_images)
    feats = extract(clf, dataset.train_images, [layer], reduction="flatten",
                    progress=False)[layer].flatten(1)
    q = extract(clf, dataset.test_images[7:8], [layer], reduction="flatten",
                progress=False)[layer].flatten(1)
    _, fi = knn(q, feats, 6)
    _, pi = knn(dataset.test_images[7:8], dataset.train_images, 6)
    assert [n["index"] for n in nb["feature"]] == fi[0].tolist()
    assert [n["index"] for n in nb["pixel"]] == pi[0].tolist()
    first = nb["pixel"][0]
    assert first["label"] == dataset.classes[int(dataset.train_labels[first["index"]])]
    assert np.array_equal(decoded(first["src"]), dataset.train_images[first["index"], 0].numpy())


def test_layers_filters_and_activations(client, clf, dataset):
    from convscope.inspect.filters import activations, filters

    layers = client.get("/api/layers").json()
    names = [layer["name"] for layer in layers["layers"]]
    assert names[0] == "conv1_1" and layers["defaults"]["filters"] == "conv1_1"
    f = client.get("/api/filters?layer=conv2_1").json()
    assert f["layer"] == "conv2_1" and f["describe"] == filters(clf, layer="conv2_1").describe()
    assert np.array_equal(decoded(f["src"])[..., :3], filters(clf, layer="conv2_1").render())
    a = client.get("/api/activations?layer=relu1_1&index=5").json()
    expected = activations(clf, dataset.test_images[5], layer="relu1_1")
    assert a["describe"] == expected.describe()
    assert np.array_equal(decoded(a["src"])[..., :3], expected.render())
    upload = png_bytes(dataset.test_images[5, 0].numpy())
    b = client.post("/api/activations?layer=relu1_1", content=upload).json()
    assert b["describe"] == a["describe"]
    r = client.get("/api/filters?layer=relu1_1")  # a ReLU has no filters: said, not failed
    assert r.status_code == 400 and "has no filters to draw" in r.json()["error"]
    r = client.get("/api/filters?layer=../../etc/passwd")
    assert r.status_code == 400 and "unknown layer" in r.json()["error"]


def test_the_tsne_map(client, dataset):
    m = client.get("/api/tsne").json()
    n = min(ServeConfig().tsne_n, len(dataset.test_images))
    assert m["n"] == n == len(m["points"]) and m["classes"] == dataset.classes
    xy = np.array([p[:2] for p in m["points"]])
    assert xy.min() == 0 and xy.max() == 1 and xy.std(0).min() > 0.1
    for _x, _y, index, label in m["points"][:50]:
        assert label == int(dataset.test_labels[index])
    # t-SNE of trained features keeps classes together: a point's nearest point on the map
    # shares its label far more often than chance (10 classes: 10%)
    labels = np.array([p[3] for p in m["points"]])
    d = ((xy[:, None] - xy[None]) ** 2).sum(-1) + np.eye(len(xy)) * 9
    assert (labels[d.argmin(1)] == labels).mean() > 0.5
    assert client.get("/api/tsne").json() == m  # computed once


def test_an_oversized_upload_gets_413(client):
    """(That the body is not read first is checked on a real server, in test_server_live:
    the TestClient reads a whole body before the app sees it.)"""
    r = client.post("/api/upload", content=b"\0" * 200_001)
    assert r.status_code == 413 and "larger than the limit of 200,000 bytes" in r.json()["error"]
    assert client.post("/api/upload", content=b"\0" * 1000,
                       headers={"Content-Length": "abc"}).status_code == 400


@pytest.mark.parametrize("body, status, words", [
    (b"just some text\n" * 20, 415, "not a readable image"),
    (b"<?xml version='1.0'?><svg xmlns='http://www.w3.org/2000/svg'/>", 415, "not a readable"),
    (b"", 422, "the upload is empty"),
])
def test_non_images_are_refused_with_a_readable_message(client, body, status, words):
    r = client.post("/api/upload", content=body)
    assert r.status_code == status and words in r.json()["error"]


@pytest.mark.parametrize("url", [
    "/../../etc/passwd", "/..%2F..%2Fetc%2Fpasswd", "/%2e%2e/%2e%2e/etc/passwd",
    "/etc/passwd", "//etc/passwd", "/api/test/../../etc/passwd",
    "/api/test/..%2F..%2Fetc%2Fpasswd", "/api/test/%2Fetc%2Fpasswd/image.png",
    "/api/test/..%2F..%2Fetc%2Fpasswd/image.png", "/api/test?start=../../etc/passwd",
    "/api/test?start=0&count=%2Fetc%2Fpasswd", "/static/../../etc/passwd",
    "/api/info/../../../etc/passwd", "/?file=../../etc/passwd&path=/etc/passwd",
    "/api/upload?name=../../etc/passwd",
])
def test_paths_from_requests_never_reach_the_filesystem(client, url):
    """Every traversal attempt is a 4xx (or the ignored parameter on the page itself), and
    no file is opened while the request is answered (an audit hook watches every open)."""
    opened = []
    watching = [True]

    def audit(event, args):
        if watching[0] and event == "open":
            opened.append(str(args[0]))

    sys.addaudithook(audit)  # hooks cannot be removed; this one stops listening below
    try:
        r = client.get(url) if "upload" not in url else client.post(url, content=b"x")
    finally:
        watching[0] = False
    if url.startswith("/?"):  # the page ignores query strings
        assert r.status_code == 200 and "root:" not in r.text
    else:
        assert 400 <= r.status_code < 500, (url, r.status_code, r.text[:200])
        assert "root:" not in r.text
    assert not [p for p in opened if "passwd" in p or "/etc" in p], opened


def test_requests_for_other_hosts_are_refused(clf, dataset):
    """DNS rebinding: a page on evil.example resolving to 127.0.0.1 must not reach the app."""
    from fastapi.testclient import TestClient

    c = TestClient(create_app(clf, dataset, ServeConfig()), base_url="http://evil.example")
    assert c.get("/api/info").status_code == 400
    # issue 20, finding 10: exposing the app (0.0.0.0) keeps the check; --allowed-host adds
    open_app = create_app(clf, dataset, ServeConfig(host="0.0.0.0"))
    assert TestClient(open_app, base_url="http://evil.example").get("/api/info").status_code == 400
    assert TestClient(open_app, base_url="http://127.0.0.1:8000").get("/api/info").status_code \
        == 200
    named = create_app(clf, dataset, ServeConfig(host="0.0.0.0", allowed_hosts=("box.lan",)))
    assert TestClient(named, base_url="http://box.lan:8000").get("/api/info").status_code == 200
    assert TestClient(named, base_url="http://evil.example").get("/api/info").status_code == 400
    bound = create_app(clf, dataset, ServeConfig(host="192.168.1.5"))
    assert TestClient(bound, base_url="http://192.168.1.5:8000").get("/api/info").status_code \
        == 200
    with pytest.raises(convscope.ConvscopeError, match="not a host name"):
        ServeConfig(allowed_hosts=("*",)).resolved()


def test_cross_origin_requests_are_refused(client):
    """Issue 20, finding 9: any web page could POST uploads to the local app; a request
    whose Origin is not the app's own gets 403 with one sentence, the page's own pass."""
    body = png_bytes(np.full((8, 8), 200, np.uint8))
    r = client.post("/api/upload", content=body, headers={"Origin": "http://evil.example"})
    assert r.status_code == 403 and "another site" in r.json()["error"]
    r = client.post("/api/upload", content=body, headers={"Origin": "null"})
    assert r.status_code == 403
    r = client.get("/api/info", headers={"Origin": "http://127.0.0.1:9999"})  # another port
    assert r.status_code == 403
    r = client.post("/api/upload", content=body, headers={"Origin": "http://127.0.0.1:8000"})
    assert r.status_code == 200, r.text
    assert client.post("/api/upload", content=body).status_code == 200  # no Origin: curl


def test_a_slow_body_gets_408():
    """Issue 20, finding 12: a body trickling in is timed out instead of held forever."""
    import asyncio

    from convscope.render.server import HTTPProblem, read_body

    class Slow:
        headers = {}

        async def stream(self):
            yield b"x"
            await asyncio.sleep(5)
            yield b"y"

    with pytest.raises(HTTPProblem) as info:
        asyncio.run(read_body(Slow(), 100, timeout=0.2))
    assert info.value.status == 408 and "did not arrive within 0.2 s" in info.value.message


def test_upload_pixels_are_bounded(clf, dataset):
    """Issue 20, finding 9: the pixels an upload decodes to are bounded (a JPEG counts at
    its reduced draft size, so a big photo still passes)."""
    from fastapi.testclient import TestClient

    c = TestClient(create_app(clf, dataset, ServeConfig(methods=("saliency",),
                                                        max_upload_pixels=250_000)),
                   base_url="http://127.0.0.1:8000")
    buf = io.BytesIO()
    Image.new("I;16", (1000, 1000), 30000).save(buf, "PNG")
    r = c.post("/api/upload", content=buf.getvalue())
    assert r.status_code == 422 and "above the limit of 250,000" in r.json()["error"]
    buf = io.BytesIO()
    Image.new("RGB", (1600, 1600), (90, 90, 90)).save(buf, "JPEG")  # drafts to 200x200
    assert c.post("/api/upload", content=buf.getvalue()).status_code == 200


@pytest.mark.parametrize("value", ["nan", "inf", "-1", "0", "1e9"])
def test_serve_refuses_a_bad_upload_limit(digits_model, value):
    """Issue 20, finding 11: nan and inf ended in tracebacks."""
    from tests.conftest import call_cli

    r = call_cli("serve", digits_model, "--max-upload-mb", value, check=2)
    assert "--max-upload-mb" in r.stderr and "Traceback" not in r.stderr


def test_the_bad_image_corpus_through_the_upload(clf, dataset, tmp_path):
    """Issue 9's corpus with the default upload limit: each rejected file gets a readable
    4xx naming the problem, each accepted one (the 6.6 MB 12-megapixel photo included) a
    top-5."""
    from fastapi.testclient import TestClient

    cases = build_corpus(tmp_path)
    assert len(cases) >= 15
    client = TestClient(create_app(clf, dataset, ServeConfig(methods=("saliency",))),
                        base_url="http://127.0.0.1:8000")
    for case in cases:
        r = client.post("/api/upload", content=(tmp_path / case.name).read_bytes())
        if case.accepted:
            assert r.status_code == 200, (case.name, r.text)
            assert len(r.json()["top5"]) == 5, case.name
        else:
            assert r.status_code in (415, 422), (case.name, r.status_code)
            error = r.json()["error"]
            assert case.reason in error and "Traceback" not in error, (case.name, error)


def test_without_test_images_uploads_still_work(clf):
    """A model whose data cannot be loaded (an ImageNet classifier) is served for uploads;
    the views that need test images say so."""
    from functools import partial

    from fastapi.testclient import TestClient

    from convscope.cli import build_parser, command_parser
    from convscope.cli.options import name_flags

    # as `convscope serve` starts it: the errors name the command's flags
    words = partial(name_flags, parser=command_parser(build_parser(), "serve"))
    c = TestClient(create_app(clf, None, ServeConfig(methods=("gradcam",)), words=words),
                   base_url="http://127.0.0.1:8000")
    assert c.get("/api/info").json()["test_images"] == 0
    assert c.get("/api/test").json() == {"total": 0, "start": 0, "items": []}
    for url in ("/api/test/0", "/api/test/0/image.png", "/api/tsne"):
        r = c.get(url)
        assert r.status_code == 404 and "start it with --data naming a dataset" in \
            r.json()["error"].replace("the server", "it"), url
    # from Python, the parameter
    plain = TestClient(create_app(clf, None, ServeConfig(methods=("gradcam",))),
                       base_url="http://127.0.0.1:8000")
    assert "`data` naming a dataset" in plain.get("/api/tsne").json()["error"]
    r = c.post("/api/upload", content=png_bytes(np.full((8, 8), 200, np.uint8)))
    assert r.status_code == 200 and [o["method"] for o in r.json()["overlays"]] == ["gradcam"]


def test_serve_config_defaults_to_loopback():
    cfg = ServeConfig().resolved()
    assert cfg.host == "127.0.0.1" and "evil.example" not in cfg.allowed_hosts
    with pytest.raises(convscope.ConvscopeError, match="unknown attribution method"):
        ServeConfig(methods=("nope",)).resolved()


# --------------------------------------------------------------------------- the Photo view
@pytest.fixture(scope="module")
def astronaut() -> bytes:
    from convscope.samples import sample_path

    return sample_path("astronaut").read_bytes()  # a 512x512 PNG of 0.5 MB


@pytest.fixture(scope="module")
def photo_client(clf):
    """The app with the default upload limit (10 MB) and no test images."""
    from fastapi.testclient import TestClient

    app = create_app(clf, None, ServeConfig(methods=("saliency",)))
    with TestClient(app, base_url="http://127.0.0.1:8000") as c:
        yield c


def test_a_photo_gets_its_faces_objects_pose_mask_and_description(photo_client, astronaut):
    """The Photo view's answer on scikit-image's astronaut: one person in the description,
    one face where it is, a pose and a mask, each as JSON and as a PNG picture."""
    from tests.conftest import ASTRONAUT_FACE

    client = photo_client
    r = client.post("/api/scene", content=astronaut)
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["text"].startswith("Image may contain: 1 person")
    assert out["photo"] == {"width": 512, "height": 512}
    person = out["concepts"][0]
    assert (person["name"], person["count"], person["words"]) == ("person", 1, "1 person")
    assert person["source"] and 0 < person["score"] <= 1
    assert out["thresholds"]["faces"] == FACE_THRESHOLDS["mtcnn"]
    faces = out["faces"]
    assert faces["count"] == 1 and faces["task"] == "faces"
    x0, y0, x1, y1 = faces["detections"][0]["box"]
    fx0, fy0, fx1, fy1 = ASTRONAUT_FACE
    assert fx0 - 20 < x0 < x1 < fx1 + 20 and fy0 - 20 < y0 < y1 < fy1 + 20
    assert "person" in [d["label"] for d in out["objects"]["detections"]]
    nose = out["pose"]["people"][0]["keypoints"]["nose"]
    assert nose["visible"] and fx0 < nose["x"] < fx1 and fy0 < nose["y"] < fy1
    assert 0.2 < out["mask"]["coverage"] < 0.9
    pictures = [out["picture"]] + [p["src"] for p in out["parts"]]
    assert [p["name"] for p in out["parts"]] == ["faces", "objects", "pose", "mask"]
    assert out["parts"][0]["summary"].startswith("1 face (")
    for uri in pictures:
        pixels = decoded(uri)
        assert min(pixels.shape[:2]) >= 512 and pixels.std() > 10
    # the description alone, for the alt of the uploaded image in the "Your image" view
    d = client.post("/api/describe", content=astronaut).json()
    assert d["text"] == out["text"] and d["concepts"] == out["concepts"]
    assert client.get("/api/info").json()["scene_missing"] is None


@pytest.mark.parametrize("url", ["/api/scene", "/api/describe"])
def test_a_bad_photo_gets_one_sentence(client, url):
    r = client.post(url, content=b"just some text\n" * 20)
    assert r.status_code == 415 and "not a readable image" in r.json()["error"]
    r = client.post(url, content=b"")
    assert r.status_code == 422 and "the upload is empty" in r.json()["error"]
    r = client.post(url, content=b"\0" * 200_001)
    assert r.status_code == 413 and "larger than the limit" in r.json()["error"]
    r = client.post(url, content=png_bytes(np.zeros((8, 8, 3), np.uint8)),
                    headers={"Origin": "http://evil.example"})
    assert r.status_code == 403


def test_without_the_scene_packages_the_photo_view_says_what_to_install(clf, monkeypatch):
    """A missing package is one sentence with the pip command (400), on /api/info before
    any photo; the classifier's upload works as before."""
    from fastapi.testclient import TestClient

    from convscope.errors import ConvscopeError
    from convscope.render import workbench

    def missing(*_args, **_kwargs):
        raise ConvscopeError("mtcnn needs the package facenet-pytorch, which is not "
                             "installed; install it with `pip install --no-deps "
                             "facenet-pytorch==2.6.0`.")

    monkeypatch.setattr(workbench, "Describer", missing)
    monkeypatch.setattr(workbench.Workbench, "scene_missing", lambda self: "mtcnn needs ...")
    c = TestClient(create_app(clf, None, ServeConfig(methods=("saliency",))),
                   base_url="http://127.0.0.1:8000")
    assert c.get("/api/info").json()["scene_missing"] == "mtcnn needs ..."
    photo = png_bytes(np.full((40, 40, 3), 120, np.uint8))
    for url in ("/api/scene", "/api/describe"):
        r = c.post(url, content=photo)
        assert r.status_code == 400 and "pip install --no-deps" in r.json()["error"], url
    assert c.post("/api/upload", content=photo).status_code == 200
