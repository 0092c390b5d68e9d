"""Debian's headless Chromium driven over the Chrome DevTools protocol (websocket-client).

``open_page`` loads a URL in a fresh browser (its own profile folder, loopback-only debugging
port, the flags headless Chromium needs in a container), and returns what a test needs: the
console errors and uncaught exceptions, every URL the page requested, the result of a DOM probe,
and a full-page PNG.
"""

import base64
import itertools
import json
import shutil
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import websocket

from vigil.processes import free_port, start_server

CHROMIUM = "/usr/bin/chromium"
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--window-size=1280,900",
)


def chromium_missing() -> str | None:
    """Why the browser tests cannot run here, or None."""
    return None if shutil.which(CHROMIUM) else f"{CHROMIUM} is not installed (make system-deps)"


@dataclass
class PageVisit:
    """What loading one page produced."""

    errors: list[str] = field(default_factory=list)  # console errors, exceptions, failed loads
    requested: list[str] = field(default_factory=list)
    probe: Any = None
    screenshot: bytes = b""


class DevTools:
    """One page target's DevTools session: commands by id, events kept in arrival order."""

    def __init__(self, ws_url: str, timeout: float) -> None:
        # Chromium refuses DevTools websockets that send an Origin it was not told to allow.
        self._ws = websocket.create_connection(ws_url, timeout=timeout, suppress_origin=True)
        self._ids = itertools.count(1)
        self.events: list[dict[str, Any]] = []

    def send(self, method: str, **params: Any) -> dict[str, Any]:
        """Run a command; returns its result (raises on a protocol error)."""
        command_id = next(self._ids)
        self._ws.send(json.dumps({"id": command_id, "method": method, "params": params}))
        while True:
            message = self._receive()
            if message.get("id") == command_id:
                if "error" in message:
                    raise RuntimeError(f"{method}: {message['error']}")
                result: dict[str, Any] = message.get("result", {})
                return result

    def wait_for(self, method: str, timeout: float) -> dict[str, Any]:
        """The first event named ``method`` (already received or arriving within ``timeout``)."""
        deadline = time.monotonic() + timeout
        seen = 0
        while True:
            for event in self.events[seen:]:
                if event["method"] == method:
                    return event
            seen = len(self.events)
            if time.monotonic() > deadline:
                raise TimeoutError(f"no {method} within {timeout} s")
            self._receive()

    def _receive(self) -> dict[str, Any]:
        message: dict[str, Any] = json.loads(self._ws.recv())
        if "method" in message:
            self.events.append(message)
        return message

    def close(self) -> None:
        self._ws.close()


@contextmanager
def chromium(work: Path) -> Iterator[str]:
    """A headless Chromium with a fresh profile; yields its DevTools HTTP base URL."""
    port = free_port()
    argv = [
        CHROMIUM,
        *FLAGS,
        f"--user-data-dir={work / 'profile'}",
        "--remote-debugging-address=127.0.0.1",
        f"--remote-debugging-port={port}",
        "about:blank",
    ]
    server = start_server("chromium", argv, f"http://127.0.0.1:{port}", "/json/version", work, 60)
    try:
        yield server.url
    finally:
        server.stop()


def open_page(url: str, probe: str, work: Path, timeout: float = 60) -> PageVisit:
    """Load ``url``, evaluate the JavaScript expression ``probe`` and take a full-page PNG."""
    visit = PageVisit()
    with chromium(work) as devtools_url:
        targets = httpx.get(f"{devtools_url}/json/list", timeout=10).json()
        page = next(t for t in targets if t["type"] == "page")
        session = DevTools(page["webSocketDebuggerUrl"], timeout)
        try:
            for domain in ("Page", "Runtime", "Log", "Network"):
                session.send(f"{domain}.enable")
            session.send("Page.navigate", url=url)
            session.wait_for("Page.loadEventFired", timeout)
            evaluated = session.send("Runtime.evaluate", expression=probe, returnByValue=True)
            visit.probe = evaluated["result"].get("value")
            size = session.send("Page.getLayoutMetrics")["cssContentSize"]
            shot = session.send(
                "Page.captureScreenshot",
                format="png",
                captureBeyondViewport=True,
                clip={"x": 0, "y": 0, "width": size["width"], "height": size["height"], "scale": 1},
            )
            visit.screenshot = base64.b64decode(shot["data"])
            visit.errors, visit.requested = _errors(session.events), _requests(session.events)
        finally:
            session.close()
    return visit


def _errors(events: list[dict[str, Any]]) -> list[str]:
    errors = []
    for event in events:
        method, params = event["method"], event.get("params", {})
        if method == "Runtime.consoleAPICalled" and params["type"] in ("error", "assert"):
            errors.append(f"console.{params['type']}: {params.get('args')}")
        elif method == "Runtime.exceptionThrown":
            errors.append(f"exception: {params['exceptionDetails']}")
        elif method == "Log.entryAdded" and params["entry"]["level"] == "error":
            errors.append(f"log: {params['entry'].get('text')} {params['entry'].get('url', '')}")
        elif method == "Network.loadingFailed":
            errors.append(f"load failed: {params.get('errorText')}")
    return errors


def _requests(events: list[dict[str, Any]]) -> list[str]:
    return [
        e["params"]["request"]["url"] for e in events if e["method"] == "Network.requestWillBeSent"
    ]
