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
    hooks and copies from mixing), and the server's memory stops growing: after one round
    as a warm-up, two more rounds of 50 add less than 40 MB of resident memory."""
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

    round_of_50()                # warm-up: thread pool, allocator arenas
    before = server.rss_kb()
    round_of_50()
    round_of_50()
    after = server.rss_kb()
    assert after - before < 40_000, f"resident memory grew by {(after - before) / 1024:.1f} MB"


def test_the_server_wrote_no_traceback(server):
    err = server.stop()
    assert "Traceback" not in err, err
