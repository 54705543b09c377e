"""The local web workbench: ``convscope serve MODEL``.

:func:`create_app` builds a FastAPI app around a :class:`Workbench` (the model, its test
images and the views).  The page is one inline HTML document (no CDN, works offline); the
JSON API behind it:

====================================  =====================================================
``POST /api/upload``                  the raw image bytes as the body: top-5 and one overlay
                                      per explanation method
``GET  /api/info``                    the model, its classes, methods and test images
``GET  /api/test?start=&count=``      a page of test images (index and label)
``GET  /api/test/{index}``            one test image: top-5, overlays (and neighbours)
``GET  /api/test/{index}/image.png``  the test image itself
====================================  =====================================================

Security, because demo servers in this field have a record of arbitrary-file reads and
multipart denial of service:

* it binds 127.0.0.1 unless told otherwise, and then answers only requests addressed to
  a loopback name (``Host`` checked), which stops DNS-rebinding pages from reaching it;
* uploads are the request body itself, never multipart: nothing is parsed but the image;
  past ``max_upload_bytes`` the answer is 413, from the ``Content-Length`` header or as
  soon as the streamed body passes the limit, before the rest is read;
* images are decoded by :mod:`convscope.images` (format allow-list, pixel limit checked
  from the header before decoding), in memory, never written anywhere;
* no path or file name from a request reaches the filesystem: test images are addressed
  by integer index, the page is a string in memory, and there is no static-file route;
* model computations run one at a time under a lock (hooks and the attribution copy must
  not interleave), in the threadpool, so the event loop keeps serving.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

import torch
from fastapi import Request  # at module level: FastAPI resolves the endpoints' annotations here

from convscope.classifier import Classifier
from convscope.data import ImageDataset
from convscope.errors import ConvscopeError, ImageError, UsageError, unknown_name
from convscope.render import html as H
from convscope.render.figures import image_png

LOOPBACK = ("127.0.0.1", "localhost", "::1")
#: HTTP status of each kind of bad image
IMAGE_STATUS = {"empty": 422, "format": 415, "too_large": 422, "corrupt": 422, "missing": 422}


@dataclass
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
    #: training images searched for neighbours (a seeded sample; None: all)
    neighbour_database: int | None = 10_000
    #: neighbours shown per image
    k: int = 6
    seed: int = 0
    #: what MODEL was on the command line
    model: str = ""
    #: Host header values accepted (None: loopback names for a loopback host, else any)
    allowed_hosts: tuple[str, ...] | None = None

    def resolved(self) -> ServeConfig:
        from dataclasses import replace

        from convscope.inspect.attribution import METHODS

        methods = tuple(dict.fromkeys(self.methods or METHODS))
        for m in methods:
            if m not in METHODS:
                raise unknown_name("attribution method", m, list(METHODS))
        if self.max_upload_bytes < 1 or self.k < 1 or self.tsne_n < 2:
            raise UsageError("the upload limit and k must be at least 1, tsne_n at least 2.")
        if not 0 <= self.port < 65536:
            raise UsageError(f"--port must be 0-65535, got {self.port}.")
        hosts = self.allowed_hosts
        if hosts is None:
            hosts = (*LOOPBACK, "[::1]") if self.host in LOOPBACK else ("*",)
        return replace(self, methods=methods, allowed_hosts=tuple(hosts))


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
    dataset: ImageDataset | None
    config: ServeConfig
    lock: threading.Lock = field(default_factory=threading.Lock)

    # ---- inputs
    def decode(self, data: bytes) -> torch.Tensor:
        """Uploaded bytes -> a uint8 (1, C, H, W) batch at the model's size; a bad image is
        an HTTPProblem with the reader's own sentence."""
        try:
            return self.clf.as_batch(data)
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
        return {"model": self.config.model or meta.model, "architecture": meta.model,
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
        from convscope.inspect.attribution import explain_many
        from convscope.render.attribution import overlay

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
        out.update(index=index, label=self.dataset.classes[int(self.dataset.test_labels[index])])
        return out

    def test_png(self, index: int) -> bytes:
        return image_png(self.test_image(index))


# --------------------------------------------------------------------------- the app
def create_app(clf: Classifier, dataset: ImageDataset | None, config: ServeConfig | None = None):
    """The FastAPI app of ``convscope serve``: ``uvicorn.run(create_app(...))``, or
    ``fastapi.testclient.TestClient(create_app(...))`` in tests."""
    from fastapi import FastAPI
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import HTMLResponse, JSONResponse, Response
    from starlette.concurrency import run_in_threadpool
    from starlette.exceptions import HTTPException as StarletteHTTPException
    from starlette.middleware.trustedhost import TrustedHostMiddleware

    from convscope.render.webpage import index_html

    config = (config or ServeConfig()).resolved()
    bench = Workbench(clf, dataset, config)
    # no /docs, /redoc or /openapi.json: they load their scripts from a CDN
    app = FastAPI(title="convscope", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.workbench = bench
    app.add_middleware(TrustedHostMiddleware, allowed_hosts=list(config.allowed_hosts))
    page = index_html(bench.info())

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

    @app.exception_handler(StarletteHTTPException)
    async def on_http(_request, exc: StarletteHTTPException):
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
        data = await read_body(request, config.max_upload_bytes)
        batch = await run_in_threadpool(bench.decode, data)
        return await run_in_threadpool(bench.analyze, batch)

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

    return app


async def read_body(request, limit: int) -> bytes:
    """The request body, refused with 413 once it passes ``limit`` bytes: at once when
    ``Content-Length`` says so, else as soon as the streamed chunks add up past it (the
    rest is never read)."""
    from starlette.requests import ClientDisconnect

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
        async for chunk in request.stream():
            body += chunk
            if len(body) > limit:
                raise too_big
    except ClientDisconnect:
        raise HTTPProblem(400, "the upload was interrupted.") from None
    if not body:
        raise HTTPProblem(422, "the upload is empty; send the image file as the request "
                               "body.")
    return bytes(body)


def serve(clf: Classifier, dataset: ImageDataset | None, config: ServeConfig | None = None,
          log_level: str = "warning") -> None:
    """Run the app with uvicorn until Ctrl-C."""
    import uvicorn

    config = (config or ServeConfig()).resolved()
    uvicorn.run(create_app(clf, dataset, config), host=config.host, port=config.port,
                log_level=log_level, server_header=False)


def free_port(host: str = "127.0.0.1") -> int:
    """A port nobody listens on now (the OS picks it)."""
    import socket

    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])
