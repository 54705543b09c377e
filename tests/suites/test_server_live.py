"""The web app as users run it: `convscope serve` in a subprocess, on a loopback port,
talked to over real sockets (what the TestClient cannot show: the bind address, answers
sent before a body is read, concurrent clients, the process's memory)."""

from __future__ import annotations

import io
import json
import socket
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import convscope
from tests.live import start_server

LIMIT_MB = 1


@pytest.fixture(scope="module")
def server(digits_model):
    s = start_server(digits_model, "--max-upload-mb", str(LIMIT_MB))
    yield s
    s.stop()


@pytest.fixture(scope="module")
def uploads():
    """20 real digits as 64x64 PNG files."""
    ds = convscope.load_dataset("digits")
    out = []
    for i in range(20):
        big = np.kron(ds.test_images[i, 0].numpy(), np.ones((8, 8), np.uint8))
        buf = io.BytesIO()
        Image.fromarray(big).save(buf, "PNG")
        out.append(buf.getvalue())
    return out


def raw_exchange(url: str, head: bytes, body_chunks=(), timeout: float = 30) -> bytes:
    """Send a request by hand (headers, then body chunks, possibly fewer bytes than
    announced) and return the first bytes of the answer."""
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=timeout) as sock:
        sock.sendall(head)
        for chunk in body_chunks:
            try:
                sock.sendall(chunk)
            except (BrokenPipeError, ConnectionResetError):
                break  # the server answered and closed: what we hope for
        return sock.recv(4096)


def test_it_listens_on_loopback_only(server):
    port = int(server.url.rsplit(":", 1)[1])
    listening = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        if not Path(table).exists():
            continue
        for line in Path(table).read_text().splitlines()[1:]:
            local, state = line.split()[1], line.split()[3]
            address, hex_port = local.split(":")
            if int(hex_port, 16) == port and state == "0A":  # LISTEN
                listening.append(address)
    if not listening:
        pytest.skip("no /proc/net/tcp to read the listening address from")
    assert listening == ["0100007F"], listening  # 127.0.0.1, little-endian hex


def test_413_is_sent_before_the_body_is_read(server):
    # Content-Length announces 1 GB; 64 kB are sent, and the answer must come anyway
    t = time.monotonic()
    head = (b"POST /api/upload HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: "
            b"application/octet-stream\r\nContent-Length: 1073741824\r\n\r\n")
    answer = raw_exchange(server.url, head, [b"\0" * 65536])
    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
    assert b"larger than the limit" in answer or time.monotonic() - t < 30
    # chunked, no length: the body passes the limit and stops; the answer comes all the same
    head = (b"POST /api/upload HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n")
    chunk = b"10000\r\n" + b"\0" * 0x10000 + b"\r\n"  # 64 kB chunks
    n = LIMIT_MB * 2**20 // 0x10000 + 2
    answer = raw_exchange(server.url, head, [chunk] * n)
    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]


def test_refusals_over_the_wire(server):
    status, body = server.post("/api/upload", b"plain text, not an image\n" * 10)
    assert status == 415 and "not a readable image" in json.loads(body)["error"]
    size = LIMIT_MB * 2**20 + 1  # sent whole: the answer may come before the last byte
    answer = raw_exchange(server.url, b"POST /api/upload HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                          b"Content-Length: %d\r\n\r\n" % size, [b"\xff" * size])
    assert answer.startswith(b"HTTP/1.1 413"), answer[:100]
    for target in (b"/../../etc/passwd", b"/..%2F..%2Fetc%2Fpasswd", b"/%2Fetc%2Fpasswd",
                   b"/api/test/..%2F..%2Fetc%2Fpasswd/image.png", b"/etc/passwd",
                   b"/api/test?start=../../etc/passwd"):
        answer = raw_exchange(server.url, b"GET " + target + b" HTTP/1.1\r\nHost: 127.0.0.1"
                              b"\r\nConnection: close\r\n\r\n")
        assert answer[9:10] == b"4" and b"root:" not in answer, (target, answer[:100])


def test_50_concurrent_uploads_with_no_error_and_stable_memory(server, uploads):
    """Every answer equals the one the same image gets alone (the lock keeps the model's
    hooks and copies from mixing), the first round's peak resident memory stays within
    HOSTILE_BOUND_MB of what it was before (issue 20, finding 12: it grew 771 MB), and
    the memory stops growing: two more rounds of 50 add less than 40 MB."""
    alone = [json.loads(server.post("/api/upload", u)[1])["top5"] for u in uploads]

    def one(i):
        status, body = server.post("/api/upload", uploads[i % len(uploads)], timeout=300)
        return i, status, json.loads(body)

    def round_of_50():
        with ThreadPoolExecutor(max_workers=50) as pool:
            results = list(pool.map(one, range(50)))
        for i, status, out in results:
            assert status == 200, out
            assert out["top5"] == alone[i % len(uploads)]
            assert len(out["overlays"]) == len(convscope.list_methods())

    first = server.rss_kb()
    reset = server.reset_peak()
    round_of_50()                # the first round: thread pool, allocator arenas
    if reset:
        grown = (server.peak_rss_kb() - first) / 1024
        print(f"\nfirst round of 50: resident {first / 1024:.0f} MB before, peak +{grown:.0f} MB")
        assert grown < HOSTILE_BOUND_MB, f"the first round's peak grew by {grown:.0f} MB"
    before = server.rss_kb()
    round_of_50()
    round_of_50()
    after = server.rss_kb()
    print(f"two more rounds: {(after - before) / 1024:+.1f} MB")
    assert after - before < 40_000, f"resident memory grew by {(after - before) / 1024:.1f} MB"


#: the bound on the server's peak resident memory over its resident memory before the
#: round, stated in the README ("Security" of `serve`); measured: see the README
HOSTILE_BOUND_MB = 350


@pytest.fixture(scope="module")
def hostile():
    """Issue 20's worst-case uploads: a 7000x7000 16-bit PNG (95 kB, above the per-upload
    pixel limit), a 1.2 kB JPEG whose header declares 7000x7000, and a 4000x4000 RGBA PNG
    (exactly the 16,000,000-pixel limit, 60 kB: the largest decode an upload may cost)."""
    bomb, liar, widest = io.BytesIO(), io.BytesIO(), io.BytesIO()
    Image.new("I;16", (7000, 7000), 1234).save(bomb, "PNG")
    Image.new("L", (7000, 7000), 128).save(liar, "JPEG", quality=10)
    Image.new("RGBA", (4000, 4000), (200, 10, 10, 128)).save(widest, "PNG")
    return {"bomb": bomb.getvalue(), "liar": liar.getvalue()[:1200],
            "widest": widest.getvalue()}


def test_50_concurrent_hostile_uploads_stay_under_the_memory_bound(digits_model, hostile):
    """Issue 20, findings 9 and 12: 50 concurrent worst-case uploads each get a clear
    refusal or an answer, and the server's peak resident memory (VmHWM, reset before the
    round) stays within HOSTILE_BOUND_MB of its resident memory before it.  The request
    loop is bounded: 50 requests, 300 s each at most."""
    s = start_server(digits_model, "--methods", "saliency")
    try:
        small = io.BytesIO()
        Image.new("L", (8, 8), 100).save(small, "PNG")
        assert s.post("/api/upload", small.getvalue())[0] == 200  # model and torch warm
        before = s.rss_kb()
        if not s.reset_peak():
            pytest.skip("this kernel does not let the peak resident memory be reset")
        kinds = ["bomb", "liar", "widest"]

        def one(i):
            kind = kinds[i % 3]
            status, body = s.post("/api/upload", hostile[kind], timeout=300)
            return kind, status, json.loads(body)

        t = time.monotonic()
        with ThreadPoolExecutor(max_workers=50) as pool:
            results = list(pool.map(one, range(50)))
        seconds = time.monotonic() - t
        peak = s.peak_rss_kb()
        for kind, status, out in results:
            if kind == "bomb":
                assert status == 422 and "above the limit of 16,000,000" in out["error"], out
            elif kind == "liar":
                assert status == 422 and "corrupt or truncated" in out["error"], out
            else:
                assert status == 200 and len(out["top5"]) == 5, out
        grown = (peak - before) / 1024
        print(f"\n50 hostile uploads: resident {before / 1024:.0f} MB before, peak "
              f"{peak / 1024:.0f} MB (+{grown:.0f} MB), {seconds:.1f} s")
        assert grown < HOSTILE_BOUND_MB, f"peak resident memory grew by {grown:.0f} MB"
    finally:
        err = s.stop()
    assert "Traceback" not in err, err


def test_the_server_wrote_no_traceback(server):
    err = server.stop()
    assert "Traceback" not in err, err
