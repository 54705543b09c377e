"""Helpers for tests that talk to a real server or a real browser."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
ARTIFACTS = ROOT / "test-artifacts"
#: headless Chromium without the background traffic a browser makes on its own
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run",
                 "--disable-dev-shm-usage"]


@dataclass
class LiveServer:
    url: str
    proc: subprocess.Popen
    stderr: str | None = None

    @property
    def pid(self) -> int:
        return self.proc.pid

    def get(self, path: str, timeout: float = 60) -> tuple[int, bytes]:
        return request(self.url + path, timeout=timeout)

    def post(self, path: str, body: bytes, timeout: float = 120) -> tuple[int, bytes]:
        return request(self.url + path, body, timeout=timeout)

    def json(self, path: str) -> dict:
        status, body = self.get(path)
        assert status == 200, body
        return json.loads(body)

    def rss_kb(self) -> int:
        """The server process's resident memory (Linux /proc), in kB."""
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
        raise AssertionError("no VmRSS line")

    def peak_rss_kb(self) -> int:
        """The server process's peak resident memory since start or reset_peak() (VmHWM)."""
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
        raise AssertionError("no VmHWM line")

    def reset_peak(self) -> bool:
        """Reset VmHWM to the current resident memory (Linux: clear_refs 5); False if not
        possible here."""
        try:
            Path(f"/proc/{self.pid}/clear_refs").write_text("5")
        except OSError:
            return False
        return self.peak_rss_kb() <= self.rss_kb() + 1024

    def stop(self) -> str:
        """Stop the server (SIGTERM, then SIGKILL) and return what it wrote to stderr."""
        if self.stderr is None:
            self.proc.terminate()
            try:
                _, self.stderr = self.proc.communicate(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                _, self.stderr = self.proc.communicate()
        return self.stderr


def request(url: str, body: bytes | None = None, timeout: float = 60,
            headers: dict | None = None) -> tuple[int, bytes]:
    """(status, body) of a GET, or of a POST of ``body``; HTTP errors are answers too."""
    req = urllib.request.Request(url, data=body, headers=headers or {},
                                 method="POST" if body is not None else "GET")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def start_server(model, *args: str, timeout: float = 180) -> LiveServer:
    """``convscope serve MODEL ARGS`` in a subprocess on a free loopback port, once it
    answers."""
    from convscope.render.server import free_port

    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "convscope", "serve", str(model), "--port", str(port), *args],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "PYTHONWARNINGS": "ignore"})
    server = LiveServer(f"http://127.0.0.1:{port}", proc)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"the server exited: {proc.stderr.read()}")
        try:
            if server.get("/api/info", timeout=5)[0] == 200:
                return server
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            time.sleep(0.5)
    server.stop()
    raise AssertionError("the server did not answer in time")


def chromium_or_skip() -> str:
    """The system chromium; skipped when absent, but a failure in CI, where `make test` has
    installed it."""
    path = shutil.which("chromium")
    if path is None:
        message = ("Debian's chromium is not installed (`make test` installs it: apt-get "
                   "install chromium)")
        if os.environ.get("CI"):
            pytest.fail(message + "; in CI the browser tests must run.")
        pytest.skip(message)
    return path
