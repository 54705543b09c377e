"""The local web workbench: ``convscope serve MODEL``.

:func:`create_app` builds a FastAPI app around a :class:`Workbench` (the model, its test
images and the views).  The page is one inline HTML document (no CDN, works offline); the
JSON API behind it:

====================================  =====================================================
``POST /api/upload``                  the raw image bytes as the body: top-5 and one overlay
                                      per explanation method
``GET  /api/info``                    the model, its classes, methods and test images
``GET  /api/test?start=&count=``      a page of test images (index and label)
``GET  /api/test/{index}``            one test image: top-5, overlays, its nearest
                                      training images in feature and in pixel space
``GET  /api/test/{index}/image.png``  the test image itself
``GET  /api/layers``                  every layer, with each view's default
``GET  /api/filters?layer=``          a layer's filters as a picture
``GET  /api/activations?layer=&index=``  a test image's activation maps at a layer
``POST /api/activations?layer=``      the same for an uploaded image (the body)
``GET  /api/tsne``                    t-SNE coordinates of a sample of the test images
====================================  =====================================================

Security, because demo servers in this field have a record of arbitrary-file reads and
multipart denial of service:

* it binds 127.0.0.1 unless told otherwise, and on any bind answers only requests addressed
  to a loopback name, the bound address or an ``--allowed-host`` (``Host`` checked), which
  stops DNS-rebinding pages from reaching it; a request whose ``Origin`` is another site
  (any web page POSTing to the app) gets 403;
* uploads are the request body itself, never multipart: nothing is parsed but the image;
  past ``max_upload_bytes`` the answer is 413, from the ``Content-Length`` header or as
  soon as the streamed body passes the limit, before the rest is read;
* a body that is not received within ``read_timeout`` seconds gets 408;
* images are decoded by :mod:`convscope.images` (format allow-list, pixel limit checked
  from the header before decoding, a per-upload bound on the pixels decoded, JPEGs decoded
  reduced to the model's size), in memory, never written anywhere, at most
  ``DECODE_WORKERS`` at a time;
* no path or file name from a request reaches the filesystem: test images are addressed
  by integer index, the page is a string in memory, and there is no static-file route;
* model computations run one at a time under a lock (hooks and the attribution copy must
  not interleave), an upload's in one worker thread of its own (one malloc arena, not one
  per pool thread), so the event loop keeps serving.
"""

import asyncio
import math
import socket
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from functools import cached_property

import torch

from convscope.classifier import Classifier
from convscope.data import ImageDataset
from convscope.errors import ConvscopeError, ImageError, UsageError, unknown_name
from convscope.images import load_image
from convscope.inspect.attribution import METHODS, explain_many
from convscope.inspect.challenges import challenges
from convscope.inspect.embedding import embed
from convscope.inspect.features import extract, model_images
from convscope.inspect.filters import activations, filters
from convscope.inspect.layers import choose_layer, list_layers
from convscope.inspect.neighbors import knn
from convscope.inspect.sources import sample
from convscope.render import html as H
from convscope.render.attribution import overlay
from convscope.render.figures import figure_png, image_png
from convscope.render.views import class_colours
from convscope.render.webpage import index_html

LOOPBACK = ("127.0.0.1", "localhost", "::1")
#: addresses that mean "every interface": not a name a request can be addressed to
WILDCARD = ("0.0.0.0", "::", "")
#: uploads decoded at the same time (each holds at most max_upload_pixels decoded)
DECODE_WORKERS = 2
#: HTTP status of each kind of bad image
IMAGE_STATUS = {"empty": 422, "format": 415, "too_large": 422, "corrupt": 422, "missing": 422}


@dataclass(frozen=True)
class ServeConfig:
    """The options of one ``serve`` job."""

    host: str = "127.0.0.1"
    port: int = 8000
    #: the test images to browse (None: the model's own data; "" for none)
    data: str | None = None
    #: largest upload accepted, in bytes
    max_upload_bytes: int = 10 * 2**20
    #: explanation methods drawn for every image (empty: all)
    methods: tuple[str, ...] = ()
    #: test images in the t-SNE map (a seeded sample)
    tsne_n: int = 1000
    #: test images scored under the six challenges (a seeded sample)
    challenge_n: int = 200
    #: training images searched for neighbours (a seeded sample; None: all)
    neighbour_database: int | None = 10_000
    #: neighbours shown per image
    k: int = 6
    seed: int = 0
    #: what MODEL was on the command line
    model: str = ""
    #: Host header values accepted besides the loopback names and the bound address
    #: (``--allowed-host``); after resolved(), the whole allow-list
    allowed_hosts: tuple[str, ...] | None = None
    #: most pixels one upload may decode to (a JPEG counts at its reduced draft size)
    max_upload_pixels: int = 16_000_000
    #: seconds a request body may take to arrive (408 after)
    read_timeout: float = 30.0

    def resolved(self) -> "ServeConfig":
        methods = tuple(dict.fromkeys(self.methods or METHODS))
        for m in methods:
            if m not in METHODS:
                raise unknown_name("attribution method", m, list(METHODS))
        if self.max_upload_bytes < 1 or self.k < 1 or self.tsne_n < 2:
            raise UsageError("the upload limit and k must be at least 1, tsne_n at least 2.")
        if self.max_upload_pixels < 1:
            raise UsageError("the upload pixel limit must be at least 1.")
        if not (math.isfinite(self.read_timeout) and self.read_timeout > 0):
            raise UsageError(f"the read timeout must be a positive number of seconds, got "
                             f"{self.read_timeout}.")
        if not 0 <= self.port < 65536:
            raise UsageError(f"--port must be 0-65535, got {self.port}.")
        hosts = [*LOOPBACK, "[::1]"]
        if self.host not in WILDCARD:
            hosts.append(f"[{self.host}]" if ":" in self.host else self.host)
        for name in self.allowed_hosts or ():
            if not name or "*" in name or "/" in name or " " in name:
                raise UsageError(f"--allowed-host {name!r} is not a host name; give a name "
                                 "or address such as myhost.local (no wildcards).")
            hosts.append(name)
        return replace(self, methods=methods, allowed_hosts=tuple(dict.fromkeys(hosts)))


class HTTPProblem(Exception):
    """A request the app refuses: an HTTP status and one readable sentence."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


# --------------------------------------------------------------------------- the views
@dataclass
class Workbench:
    """The model, its test images and every view the app serves (plain Python: the tests
    call it directly too).  Model work runs under ``lock``."""

    clf: Classifier
    source: ImageDataset | None   # the dataset as loaded (its training split: neighbours)
    config: ServeConfig
    #: the split browsed: "test" (the model's own data) or "all" (any other)
    split: str = "test"
    lock: threading.Lock = field(default_factory=threading.Lock)
    cache: dict = field(default_factory=dict)  # computed once, under the lock

    @cached_property
    def dataset(self) -> ImageDataset | None:
        """The dataset with the browsed split as its test images."""
        return None if self.source is None else self.source.as_evaluation_split(self.split)

    def once(self, key, compute):
        """``compute()`` the first time ``key`` is asked for; call with the lock held."""
        if key not in self.cache:
            self.cache[key] = compute()
        return self.cache[key]

    def view_of_test_images(self, key, compute, least: int, what: str) -> dict:
        """A view over the test images, computed once: 404 with one sentence when the server
        has fewer than ``least`` of them."""
        if self.test_count < least:
            raise HTTPProblem(404, f"{what} needs test images; start the server with "
                                   "--data NAME.")
        with self.lock:
            return self.once(key, compute)

    # ---- inputs
    def decode(self, data: bytes) -> torch.Tensor:
        """Uploaded bytes -> a uint8 (1, C, H, W) batch at the model's size; a bad image is
        an HTTPProblem with the reader's own sentence."""
        try:
            return torch.from_numpy(load_image(data, self.clf.image_size, self.clf.channels,
                                               limit=self.config.max_upload_pixels))[None]
        except ImageError as exc:
            raise HTTPProblem(IMAGE_STATUS.get(exc.kind, 422), str(exc)) from None

    def test_image(self, index: int) -> torch.Tensor:
        """Test image ``index`` as uint8 (C, H, W) (its dataset's own size)."""
        n = self.test_count
        if not 0 <= index < n:
            raise HTTPProblem(404, f"there is no test image {index}; indices are 0-{n - 1}."
                              if n else "this server has no test images; start it with "
                              "--data NAME.")
        return self.dataset.test_images[index]

    @property
    def test_count(self) -> int:
        return 0 if self.dataset is None else len(self.dataset.test_images)

    # ---- answers
    def info(self) -> dict:
        meta = self.clf.meta
        return {"model": H.model_label(self.config.model or meta.model),
                "architecture": meta.model,
                "classes": self.clf.classes, "image_size": list(meta.image_size),
                "channels": meta.channels, "methods": list(self.config.methods),
                "data": None if self.dataset is None else self.dataset.name,
                "test_images": self.test_count,
                "max_upload_bytes": self.config.max_upload_bytes}

    def test_page(self, start: int, count: int) -> dict:
        n = self.test_count
        if start < 0 or count < 1 or count > 500:
            raise HTTPProblem(422, "start must be at least 0 and count 1-500.")
        stop = min(n, start + count)
        labels = self.dataset.test_labels if n else torch.empty(0)
        return {"total": n, "start": start,
                "items": [{"index": i, "label": self.dataset.classes[int(labels[i])]}
                          for i in range(start, stop)]}

    def analyze(self, batch: torch.Tensor) -> dict:
        """Top-5 and one overlay per method for a uint8 (1, C, H, W) image."""
        with self.lock:
            results = explain_many(self.clf, batch, list(self.config.methods))
        first = next(iter(results.values()))
        probs = first.probs[0]
        p, idx = probs.topk(min(5, len(probs)))
        return {
            "image": H.data_uri(image_png(first.images[0])),
            "top5": [{"label": self.clf.classes[int(i)], "p": round(float(v), 5)}
                     for v, i in zip(p, idx)],
            "target": self.clf.classes[int(first.targets[0])],
            "overlays": [{"method": m, "src": H.data_uri(image_png(overlay(a, 0)))}
                         for m, a in results.items()],
        }

    def test_item(self, index: int) -> dict:
        image = self.test_image(index)
        out = self.analyze(self.clf.as_batch(image[None]))
        out.update(index=index, label=self.dataset.classes[int(self.dataset.test_labels[index])],
                   neighbours=self.neighbours(image))
        return out

    # ---- neighbours
    def _database(self) -> dict:
        """The training images searched (a seeded sample) and their features, once."""
        ds = self.source
        idx = sample(len(ds.train_images), self.config.neighbour_database, self.config.seed)
        images = ds.train_images[idx]
        layer = choose_layer(self.clf, None, "neighbors")
        feats = extract(self.clf, model_images(self.clf, images), [layer], reduction="flatten",
                        progress=False)[layer].flatten(1)
        return {"indices": idx, "images": images, "labels": ds.train_labels[idx],
                "features": feats, "layer": layer}

    def neighbours(self, image: torch.Tensor) -> dict | None:
        """The k nearest training images of a test image (C, H, W): by the network's
        features and by raw pixels, nearest first."""
        if self.source is None or len(self.source.train_images) == 0:
            return None
        with self.lock:
            db = self.once("database", self._database)
            q = extract(self.clf, model_images(self.clf, image[None]), [db["layer"]],
                        reduction="flatten", progress=False)[db["layer"]].flatten(1)
        k = min(self.config.k, len(db["images"]))

        def found(indices, distances):
            return [{"index": int(db["indices"][i]), "distance": round(float(d), 4),
                     "label": self.source.classes[int(db["labels"][i])],
                     "src": H.data_uri(image_png(db["images"][i]))}
                    for i, d in zip(indices[0], distances[0])]

        fd, fi = knn(q, db["features"], k)
        pd, pi = knn(image[None], db["images"], k)
        return {"layer": db["layer"], "database": len(db["images"]),
                "feature": found(fi, fd), "pixel": found(pi, pd)}

    # ---- layers: filters and activations
    def layers(self) -> dict:
        with self.lock:
            return self.once("layers", lambda: list_layers(self.clf).to_dict())

    def filters(self, layer: str | None) -> dict:
        with self.lock:
            f = filters(self.clf, layer=layer or None)
            png = image_png(f.render())
        return {"layer": f.layer, "describe": f.describe(), "src": H.data_uri(png)}

    def activations(self, layer: str | None, batch: torch.Tensor) -> dict:
        with self.lock:
            a = activations(self.clf, batch, layer=layer or None)
            png = image_png(a.render())
        return {"layer": a.layer, "describe": a.describe(), "src": H.data_uri(png)}

    # ---- the t-SNE map
    def _embedding(self) -> dict:
        from matplotlib.colors import to_hex  # heavy optional dependency


        e = embed(self.clf, self.source, split=self.split, seed=self.config.seed,
                  n=min(self.config.tsne_n, self.test_count))
        xy = e.coords - e.coords.min(axis=0)
        xy = xy / max(float(xy.max()), 1e-12)                     # in [0, 1]
        colours = [to_hex(c) for c in class_colours(len(self.dataset.classes))]
        return {"layer": e.config.layer, "n": e.config.n, "classes": self.dataset.classes,
                "colours": colours,
                "points": [[round(float(x), 4), round(float(y), 4), int(i), int(label)]
                           for (x, y), i, label in zip(xy, e.indices, e.labels)]}

    def tsne(self) -> dict:
        return self.view_of_test_images("tsne", self._embedding, 4, "the t-SNE map")

    # ---- the six challenges
    def _challenges(self) -> dict:
        r = challenges(self.clf, self.source, split=self.split, seed=self.config.seed,
                       n=min(self.config.challenge_n, self.test_count))
        m = r.main
        return {"n": r.n, "measure": r.measure, "clean": m.clean, "hardest": m.hardest(),
                "scores": m.group_scores(), "skipped": r.skipped,
                "curves": H.data_uri(figure_png(r.figure())),
                "strips": H.data_uri(figure_png(r.strips_figure()))}

    def challenges(self) -> dict:
        return self.view_of_test_images("challenges", self._challenges, 2,
                                        "the six challenges' view")

    def test_png(self, index: int) -> bytes:
        return image_png(self.test_image(index))


# --------------------------------------------------------------------------- the app
def create_app(clf: Classifier, dataset: ImageDataset | None, config: ServeConfig | None = None,
               split: str | None = None):
    """The FastAPI app of ``convscope serve``: ``uvicorn.run(create_app(...))``, or
    ``fastapi.testclient.TestClient(create_app(...))`` in tests.

    ``dataset`` (None: uploads only) is browsed on ``split``: by default its test images
    when it is the model's own data, every image otherwise."""
    # heavy optional dependency, imported here so that the CLI starts without it; the
    # module has no `from __future__ import annotations`, so the endpoints' `Request`
    # annotations are this class itself, which FastAPI needs to inject the request
    from fastapi import FastAPI, Request  # heavy optional dependency
    from fastapi.exceptions import RequestValidationError  # heavy optional dependency
    from fastapi.responses import HTMLResponse, JSONResponse, Response  # heavy optional dependency
    from starlette.exceptions import HTTPException as HTTPError  # heavy optional dependency
    from starlette.middleware.trustedhost import TrustedHostMiddleware  # heavy optional dependency


    config = (config or ServeConfig()).resolved()
    if split is None:
        split = "test" if dataset is None or dataset.name == clf.meta.dataset else "all"
    bench = Workbench(clf, dataset, config, split)
    # no /docs, /redoc or /openapi.json: they load their scripts from a CDN
    app = FastAPI(title="convscope", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.workbench = bench
    # decodes on their own small pool (bounded); uploads' model work on one thread
    decoders = ThreadPoolExecutor(DECODE_WORKERS, thread_name_prefix="convscope-decode")
    model_thread = ThreadPoolExecutor(1, thread_name_prefix="convscope-model")
    app.state.executors = (decoders, model_thread)

    async def on(pool, fn, *args):
        return await asyncio.get_running_loop().run_in_executor(pool, fn, *args)

    page = index_html(bench.info())

    @app.middleware("http")
    async def same_origin(request: Request, call_next):
        # runs inside the Host check (added after it): the Host named is an allowed one
        origin = request.headers.get("origin")
        if origin is not None:
            own = f"{request.url.scheme}://{request.headers.get('host', '')}"
            if origin.rstrip("/").lower() != own.lower():
                return JSONResponse(
                    {"error": f"requests from another site ({origin[:100]}) are refused; "
                              "use the app's own page."}, status_code=403)
        return await call_next(request)

    app.add_middleware(TrustedHostMiddleware, allowed_hosts=list(config.allowed_hosts))

    @app.middleware("http")
    async def headers(request: Request, call_next):
        response = await call_next(request)
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers["Content-Security-Policy"] = (
            "default-src 'none'; img-src 'self' data:; style-src 'unsafe-inline'; "
            "script-src 'unsafe-inline'; connect-src 'self'; base-uri 'none'; "
            "form-action 'none'; frame-ancestors 'none'")
        response.headers["Referrer-Policy"] = "no-referrer"
        return response

    # ---- errors: one readable sentence, never a traceback
    def problem(status: int, message: str) -> JSONResponse:
        return JSONResponse({"error": message}, status_code=status)

    @app.exception_handler(HTTPProblem)
    async def on_problem(_request, exc: HTTPProblem):
        return problem(exc.status, exc.message)

    @app.exception_handler(ConvscopeError)
    async def on_convscope(_request, exc: ConvscopeError):
        return problem(400, str(exc))

    @app.exception_handler(RequestValidationError)
    async def on_validation(_request, exc: RequestValidationError):
        where = ", ".join(".".join(str(p) for p in e.get("loc", ())[1:]) or "request"
                          for e in exc.errors())
        return problem(422, f"invalid {where}: give whole numbers where numbers are asked for.")

    @app.exception_handler(HTTPError)
    async def on_http(_request, exc: HTTPError):
        text = {404: "no such page or resource.", 405: "that method is not allowed here."}
        return problem(exc.status_code, text.get(exc.status_code, str(exc.detail)))

    # ---- routes
    @app.get("/", response_class=HTMLResponse)
    def index():
        return HTMLResponse(page)

    @app.get("/api/info")
    def info():
        return bench.info()

    @app.post("/api/upload")
    async def upload(request: Request):
        data = await read_body(request, config.max_upload_bytes, config.read_timeout)
        batch = await on(decoders, bench.decode, data)
        del data
        return await on(model_thread, bench.analyze, batch)

    @app.get("/api/test")
    def test_page(start: int = 0, count: int = 60):
        return bench.test_page(start, count)

    @app.get("/api/test/{index}")
    def test_item(index: int):
        return bench.test_item(index)

    @app.get("/api/test/{index}/image.png")
    def test_png(index: int):
        return Response(bench.test_png(index), media_type="image/png",
                        headers={"Cache-Control": "max-age=3600"})

    @app.get("/api/layers")
    def layers():
        return bench.layers()

    @app.get("/api/filters")
    def filters(layer: str = ""):
        return bench.filters(layer)

    @app.get("/api/activations")
    def activations(index: int, layer: str = ""):
        return bench.activations(layer, bench.clf.as_batch(bench.test_image(index)[None]))

    @app.post("/api/activations")
    async def activations_of_upload(request: Request, layer: str = ""):
        data = await read_body(request, config.max_upload_bytes, config.read_timeout)
        batch = await on(decoders, bench.decode, data)
        del data
        return await on(model_thread, bench.activations, layer, batch)

    @app.get("/api/tsne")
    def tsne():
        return bench.tsne()

    @app.get("/api/challenges")
    def challenges():
        return bench.challenges()

    return app


async def read_body(request, limit: int, timeout: float = 30.0) -> bytes:
    """The request body, refused with 413 once it passes ``limit`` bytes: at once when
    ``Content-Length`` says so, else as soon as the streamed chunks add up past it (the
    rest is never read); with 408 when it has not all arrived within ``timeout`` s."""
    from starlette.requests import ClientDisconnect  # heavy optional dependency

    too_big = HTTPProblem(413, f"the upload is larger than the limit of {limit:,} bytes; "
                               "send a smaller image.")
    length = request.headers.get("content-length")
    if length is not None:
        if not length.isdigit():
            raise HTTPProblem(400, "the Content-Length header is not a number.")
        if int(length) > limit:
            raise too_big
    body = bytearray()
    try:
        async with asyncio.timeout(timeout):
            async for chunk in request.stream():
                body += chunk
                if len(body) > limit:
                    raise too_big
    except ClientDisconnect:
        raise HTTPProblem(400, "the upload was interrupted.") from None
    except TimeoutError:
        raise HTTPProblem(408, f"the upload did not arrive within {timeout:g} s; send it "
                               "again on a faster connection.") from None
    if not body:
        raise HTTPProblem(422, "the upload is empty; send the image file as the request "
                               "body.")
    return bytes(body)


def serve(clf: Classifier, dataset: ImageDataset | None, config: ServeConfig | None = None,
          split: str | None = None, log_level: str = "warning") -> None:
    """Run the app with uvicorn until Ctrl-C."""
    import uvicorn  # heavy optional dependency

    config = (config or ServeConfig()).resolved()
    uvicorn.run(create_app(clf, dataset, config, split), host=config.host, port=config.port,
                log_level=log_level, server_header=False)


def free_port(host: str = "127.0.0.1") -> int:
    """A port nobody listens on now (the OS picks it)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])
