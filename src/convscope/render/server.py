"""The local web workbench: ``convscope serve MODEL``.

:func:`create_app` builds a FastAPI app around a
:class:`~convscope.render.workbench.Workbench` (the model, its test images and the views,
without HTTP; the report shares it): this module is the HTTP layer only, mapping the
workbench's errors to status codes.  The page is one inline HTML document (no CDN, works offline); the
JSON API behind it:

====================================  =====================================================
``POST /api/upload``                  the raw image bytes as the body: top-5 and one overlay
                                      per explanation method
``POST /api/scene``                   a photo (the body): faces, objects, pose, person
                                      mask and its description (alt text), as JSON and
                                      pictures (the Photo view)
``POST /api/describe``                a photo (the body): its description (alt text) and
                                      concepts alone (the alt of the uploaded image)
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
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace

from convscope.classifier import Classifier
from convscope.data import ImageDataset
from convscope.errors import ConvscopeError, ImageError, UsageError, unknown_name
from convscope.inspect.attribution import METHODS
from convscope.options import float_in, int_in, option, positive_int
from convscope.render.webpage import index_html
from convscope.render.workbench import NotFound, OutOfRange, Workbench

LOOPBACK = ("127.0.0.1", "localhost", "::1")
#: addresses that mean "every interface": not a name a request can be addressed to
WILDCARD = ("0.0.0.0", "::", "")
#: uploads decoded at the same time (each holds at most max_upload_pixels decoded)
DECODE_WORKERS = 2
#: HTTP status of each kind of bad image
IMAGE_STATUS = {"empty": 422, "format": 415, "too_large": 422, "corrupt": 422, "missing": 422}
#: HTTP status of the workbench's other errors (any other ConvscopeError: 400)
ERROR_STATUS = {NotFound: 404, OutOfRange: 422}


_mb = float_in(0, 2048, lo_open=True, name="MB")


def megabytes(text: str) -> int:
    """``--max-upload-mb`` (a value type): megabytes, above 0 and at most 2048, as bytes."""
    return max(1, int(_mb(text) * 2**20))


@dataclass(frozen=True)
class ServeConfig:
    """The options of one ``serve`` job."""

    host: str = option("127.0.0.1", "address to listen on (127.0.0.1: this machine only; "
                                    "0.0.0.0 exposes the app to your network)", metavar="HOST")
    port: int = option(8000, "port (0: any free one)", type=int_in(0, 65535, "port"))
    #: the test images to browse (None: the model's own data; "" for none; the CLI's --data)
    data: str | None = None
    max_upload_bytes: int = option(10 * 2**20, "largest upload accepted, above 0 and at most "
                                               "2048 MB", flag="--max-upload-mb",
                                   type=megabytes, metavar="MB", shown="10 MB")
    methods: tuple[str, ...] = option((), "explanation methods drawn for every image "
                                          "(default: all)", many=True,
                                      choices=lambda: list(METHODS), metavar="METHOD")
    tsne_n: int = option(1000, "test images in the t-SNE map (a seeded sample)",
                         flag="--embed-n", type=positive_int, old=("--tsne-n",))
    challenge_n: int = option(200, "test images scored under the six challenges (a seeded "
                                   "sample)", type=positive_int)
    #: training images searched for neighbours (a seeded sample; None: all)
    neighbour_database: int | None = 10_000
    #: neighbours shown per image
    k: int = 6
    seed: int = 0
    #: what MODEL was on the command line
    model: str = ""
    #: Host header values accepted besides the loopback names and the bound address; after
    #: resolved(), the whole allow-list
    allowed_hosts: tuple[str, ...] | None = option(
        None, "also answer requests addressed to these host names (repeatable; loopback "
              "names and the --host address are always allowed)", flag="--allowed-host",
        many=True, metavar="NAME")
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
            raise UsageError(f"`port` must be 0-65535, got {self.port}.")
        hosts = [*LOOPBACK, "[::1]"]
        if self.host not in WILDCARD:
            hosts.append(f"[{self.host}]" if ":" in self.host else self.host)
        for name in self.allowed_hosts or ():
            if not name or "*" in name or "/" in name or " " in name:
                raise UsageError(f"{name!r} in `allowed_hosts` is not a host name; give a name "
                                 "or address such as myhost.local (no wildcards).")
            hosts.append(name)
        return replace(self, methods=methods, allowed_hosts=tuple(dict.fromkeys(hosts)))


class HTTPProblem(Exception):
    """A request the app refuses for HTTP's own reasons (the body: its size, its arrival):
    an HTTP status and one readable sentence."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


# --------------------------------------------------------------------------- the app
def create_app(clf: Classifier, dataset: ImageDataset | None, config: ServeConfig | None = None,
               split: str | None = None, words: Callable[[str], str] | None = None):
    """The FastAPI app of ``convscope serve``: ``uvicorn.run(create_app(...))``, or
    ``fastapi.testclient.TestClient(create_app(...))`` in tests.

    ``dataset`` (None: uploads only) is browsed on ``split``: by default its test images
    when it is the model's own data, every image otherwise.  ``words`` rewrites an error's
    parameter names for its reader (the CLI: as the flags of ``convscope serve``)."""
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
    bench = Workbench(clf, dataset, split, methods=config.methods, seed=config.seed,
                      tsne_n=config.tsne_n, challenge_n=config.challenge_n,
                      neighbour_database=config.neighbour_database, k=config.k,
                      max_upload_pixels=config.max_upload_pixels, model=config.model)
    # no /docs, /redoc or /openapi.json: they load their scripts from a CDN
    app = FastAPI(title="convscope", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.workbench = bench
    # decodes on their own small pool (bounded); uploads' model work on one thread
    decoders = ThreadPoolExecutor(DECODE_WORKERS, thread_name_prefix="convscope-decode")
    model_thread = ThreadPoolExecutor(1, thread_name_prefix="convscope-model")
    app.state.executors = (decoders, model_thread)

    async def on(pool, fn, *args):
        return await asyncio.get_running_loop().run_in_executor(pool, fn, *args)

    def info() -> dict:
        return {**bench.info(), "max_upload_bytes": config.max_upload_bytes}

    page = index_html(info())

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
        return JSONResponse({"error": words(message) if words else message},
                            status_code=status)

    @app.exception_handler(HTTPProblem)
    async def on_problem(_request, exc: HTTPProblem):
        return problem(exc.status, exc.message)

    @app.exception_handler(ConvscopeError)
    async def on_convscope(_request, exc: ConvscopeError):
        # the workbench's errors as HTTP: most specific class first (a bad image by its kind)
        if isinstance(exc, ImageError):
            return problem(IMAGE_STATUS.get(exc.kind, 422), str(exc))
        status = next((s for kind, s in ERROR_STATUS.items() if isinstance(exc, kind)), 400)
        return problem(status, str(exc))

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
    def info_route():
        return info()

    @app.post("/api/upload")
    async def upload(request: Request):
        data = await read_body(request, config.max_upload_bytes, config.read_timeout)
        batch = await on(decoders, bench.decode, data)
        del data
        return await on(model_thread, bench.analyze, batch)

    async def photo_job(request: Request, job):
        """An uploaded photo, decoded on the pool, then ``job`` on the model thread."""
        data = await read_body(request, config.max_upload_bytes, config.read_timeout)
        photo = await on(decoders, bench.decode_photo, data)
        del data
        return await on(model_thread, job, photo)

    @app.post("/api/scene")
    async def scene(request: Request):
        return await photo_job(request, bench.scene)

    @app.post("/api/describe")
    async def describe(request: Request):
        return await photo_job(request, bench.describe)

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
          split: str | None = None, log_level: str = "warning",
          words: Callable[[str], str] | None = None) -> None:
    """Run the app with uvicorn until Ctrl-C (``words``: as in :func:`create_app`)."""
    import uvicorn  # heavy optional dependency

    config = (config or ServeConfig()).resolved()
    uvicorn.run(create_app(clf, dataset, config, split, words), host=config.host, port=config.port,
                log_level=log_level, server_header=False)


def free_port(host: str = "127.0.0.1") -> int:
    """A port nobody listens on now (the OS picks it)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])
