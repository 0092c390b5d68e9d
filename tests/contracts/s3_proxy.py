"""An HTTP proxy on loopback in front of the moto S3 server that can refuse chosen requests.

The store under test talks to the proxy as its S3 endpoint (both its clients: pyarrow's C++
one and boto3), so a write can be cut at any of its requests over the real wire protocol:
the proxy answers that request with an S3 error instead of forwarding it.
"""

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.client import HTTPConnection
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

# (method, path) -> whether to refuse it
Fault = Callable[[str, str], bool]
_HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "expect", "host", "content-length"}
_ACCESS_DENIED = (
    b'<?xml version="1.0" encoding="UTF-8"?><Error><Code>AccessDenied</Code>'
    b"<Message>refused by the test proxy</Message></Error>"
)


@dataclass
class S3Proxy:
    """Forwards every request to ``target`` unless ``fault`` refuses it (403 AccessDenied,
    which no client retries)."""

    target: str
    fault: Fault = lambda method, path: False
    requests: list[tuple[str, str]] = field(default_factory=list)
    refused: list[tuple[str, str]] = field(default_factory=list)

    @contextmanager
    def serve(self) -> Iterator[str]:
        proxy = self
        netloc = urlsplit(self.target).netloc

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive and Expect: 100-continue, as clients use

            def _handle(self) -> None:
                body = self._body()
                request = (self.command, self.path)
                proxy.requests.append(request)
                if proxy.fault(*request):
                    proxy.refused.append(request)
                    self._reply(403, {"Content-Type": "application/xml"}, _ACCESS_DENIED)
                    return
                connection = HTTPConnection(netloc, timeout=60)
                headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP_BY_HOP}
                headers["Host"] = netloc
                if body or self.command in ("PUT", "POST"):
                    headers["Content-Length"] = str(len(body))
                connection.request(self.command, self.path, body=body, headers=headers)
                response = connection.getresponse()
                payload = response.read()
                kept = {k: v for k, v in response.getheaders() if k.lower() not in _HOP_BY_HOP}
                if self.command == "HEAD":  # no body, but the object's length
                    kept["Content-Length"] = response.getheader("Content-Length", "0")
                connection.close()
                self._reply(response.status, kept, payload)

            def _body(self) -> bytes:
                if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                    chunks: list[bytes] = []
                    while True:
                        size = int(self.rfile.readline().split(b";")[0].strip(), 16)
                        if size == 0:
                            while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                                pass  # trailers
                            return b"".join(chunks)
                        chunks.append(self.rfile.read(size))
                        self.rfile.readline()
                return self.rfile.read(int(self.headers.get("Content-Length", 0)))

            def _reply(self, status: int, headers: dict[str, str], payload: bytes) -> None:
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                if "Content-Length" not in headers:
                    self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(payload)

            do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _handle  # noqa: N815

            def log_message(self, format: str, *args: object) -> None:
                pass

        server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        try:
            yield f"http://127.0.0.1:{server.server_address[1]}"
        finally:
            server.shutdown()
            server.server_close()
            thread.join()
