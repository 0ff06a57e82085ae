"""A real HTTP file server on 127.0.0.1 for the fetch tests, and helpers that make registry entries.

The server runs in a thread, serves bytes the tests hand it, honours Range, counts requests and body
bytes sent per path, and can misbehave on purpose: answer an error status N times, drop the
connection after K bytes, trickle its output so two clients overlap, send a Content-Length that
lies, or stream a body without Content-Length that never ends. ``publish_on_hub`` makes it answer
like the Hugging Face Hub for one LFS file; ``ConnectionCounter`` is a bare listening socket that
counts every connection made to it (for "offline opens no socket").
"""

from __future__ import annotations

import hashlib
import socket
import threading
import time
import urllib.parse
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass
class FileServer:
    """State shared with the handler thread. Paths are URL paths like ``/files/w.bin``."""

    files: dict[str, bytes] = field(default_factory=dict)
    requests: list[dict] = field(default_factory=list)
    bytes_sent: Counter = field(default_factory=Counter)
    fail: dict[str, list[int]] = field(default_factory=dict)  # path -> statuses to answer first
    drop_after: dict[str, list[int]] = field(default_factory=dict)  # path -> byte counts, one per GET
    headers: dict[str, dict[str, str]] = field(default_factory=dict)  # path -> extra response headers
    chunk_delay: float = 0.0  # seconds between 64 KiB chunks (to make two clients overlap)
    lie_length: dict[str, int] = field(default_factory=dict)  # path -> Content-Length to announce instead
    endless: set[str] = field(default_factory=set)  # paths streamed with no Content-Length, forever
    base: str = ""
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, path: str, data: bytes) -> str:
        """Serve ``data`` at ``path``; returns its URL."""
        path = "/" + path.lstrip("/")
        self.files[path] = data
        return self.base + urllib.parse.quote(path)

    def gets(self, path: str) -> list[dict]:
        path = "/" + path.lstrip("/")
        return [r for r in self.requests if r["path"] == path and r["method"] == "GET"]

    def sent(self, path: str) -> int:
        return self.bytes_sent["/" + path.lstrip("/")]


def _handler(state: FileServer):
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):  # keep test output clean
            pass

        def do_HEAD(self):
            self._serve(body=False)

        def do_GET(self):
            self._serve(body=True)

        def _serve(self, body: bool):
            path = urllib.parse.unquote(urllib.parse.urlparse(self.path).path)
            with state.lock:
                state.requests.append({"path": path, "method": self.command, "range": self.headers.get("Range")})
                failing = state.fail.get(path)
                status = failing.pop(0) if failing else None
                drops = state.drop_after.get(path)
                drop = drops.pop(0) if (drops and body) else None
            if status is not None:
                self.send_response(status)
                self.send_header("Retry-After", "0")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            if path in state.endless:
                self._stream_forever(path, body)
                return
            data = state.files.get(path)
            if data is None:
                self.send_response(404)
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            start, end = 0, len(data)
            rng = self.headers.get("Range")
            if rng and rng.startswith("bytes="):
                first, _, last = rng[6:].partition("-")
                start = int(first)
                end = int(last) + 1 if last else len(data)
                if start >= len(data):
                    self.send_response(416)
                    self.send_header("Content-Range", f"bytes */{len(data)}")
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                self.send_response(206)
                self.send_header("Content-Range", f"bytes {start}-{end - 1}/{len(data)}")
            else:
                self.send_response(200)
            self.send_header("Content-Length", str(state.lie_length.get(path, end - start)))
            self.send_header("Accept-Ranges", "bytes")
            for key, value in state.headers.get(path, {}).items():
                self.send_header(key, value)
            self.end_headers()
            if not body:
                return
            payload = data[start:end]
            if drop is not None:
                payload = payload[:drop]
            for i in range(0, len(payload), 1 << 16):
                piece = payload[i:i + (1 << 16)]
                try:
                    self.wfile.write(piece)
                except OSError:  # the client hung up (it refused the body, or stopped reading): fine
                    self.close_connection = True
                    return
                with state.lock:
                    state.bytes_sent[path] += len(piece)
                if state.chunk_delay:
                    time.sleep(state.chunk_delay)
            if drop is not None or path in state.lie_length:
                self.close_connection = True  # the client sees fewer bytes than Content-Length

        def _stream_forever(self, path: str, body: bool) -> None:
            # HTTP/1.0 style: no Content-Length, the body ends when the server closes (here: never,
            # until the client hangs up).
            self.send_response(200)
            self.end_headers()
            self.close_connection = True
            piece = b"\0" * (1 << 16)
            while body:
                try:
                    self.wfile.write(piece)
                except OSError:  # the client stopped reading
                    return
                with state.lock:
                    state.bytes_sent[path] += len(piece)

    return Handler


def start_server() -> tuple[FileServer, Callable[[], None]]:
    """Start a FileServer on 127.0.0.1, port 0; returns (state, stop)."""
    state = FileServer()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(state))
    server.daemon_threads = True
    state.base = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()

    def stop() -> None:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)

    return state, stop


def publish_on_hub(state: FileServer, repo: str, filename: str, data: bytes, *, etag: str | None = None,
                   commit: str = "a" * 40) -> None:
    """Serve ``data`` the way the Hub serves an LFS file of ``repo`` at ``main``: huggingface_hub's
    HEAD reads X-Repo-Commit, X-Linked-Etag (the LFS sha256, which names the blob) and X-Linked-Size.
    ``etag`` lets a test make the Hub announce one sha256 and send other bytes."""
    path = f"/{repo}/resolve/main/{filename}"
    state.add(path, data)
    tag = etag or sha256(data)
    state.headers[path] = {"X-Repo-Commit": commit, "X-Linked-Etag": f'"{tag}"', "X-Linked-Size": str(len(data)),
                           "ETag": f'"{tag}"'}


class ConnectionCounter:
    """A socket listening on 127.0.0.1 that accepts and counts connections, then closes them.

    Anything pointed at ``url`` (an origin, a mirror, the Hub's endpoint) shows up in ``count``.
    """

    def __init__(self):
        self.count = 0
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(16)
        self._sock.settimeout(0.05)
        self.url = f"http://127.0.0.1:{self._sock.getsockname()[1]}"
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except OSError:
                continue
            self.count += 1
            conn.close()

    def close(self) -> int:
        """Stop, counting the connections still waiting in the backlog too; returns ``count``."""
        if self._stop.is_set():
            return self.count
        self._stop.set()
        self._thread.join(timeout=5)
        self._sock.setblocking(False)
        while True:
            try:
                conn, _ = self._sock.accept()
            except OSError:
                break
            self.count += 1
            conn.close()
        self._sock.close()
        return self.count


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def entry_dict(name: str, files: list[dict]) -> dict:
    """A minimal valid registry entry with the given file specs."""
    return {
        "name": name,
        "architecture": {"library": "zoo", "builder": "lenet"},
        "license": "MIT",
        "preprocessing": {"input_size": [1, 8, 8]},
        "head": {"num_classes": 2},
        "files": files,
    }


def file_dict(sources: list, data: bytes | None = None, *, filename: str = "weights.safetensors",
              role: str = "weights", fmt: str = "safetensors", checksum: dict | None = None) -> dict:
    spec = {"role": role, "filename": filename, "format": fmt, "sources": sources}
    spec["checksum"] = checksum if checksum is not None else {"sha256": sha256(data)}
    return spec
