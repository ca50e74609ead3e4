"""A small headless-Chromium driver for tests: the Chrome DevTools Protocol over a pipe.

Chromium is started with ``--remote-debugging-pipe``: it reads protocol messages (JSON, each ended
by a NUL byte) from file descriptor 3 and writes answers and events to descriptor 4. No port is
opened and nothing but the standard library is needed, so the driver works offline and does not
depend on a browser-automation package matching the installed Chromium's version.

    with Browser() as browser:
        page = browser.open("file:///tmp/report.html", width=1200, height=900)
        page.evaluate("document.title")
        pixels = page.screenshot()          # (H, W, 3) uint8
"""

from __future__ import annotations

import base64
import io
import json
import os
import select
import shutil
import subprocess
import sys
import tempfile
import time

import numpy as np

FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--no-first-run",
         "--force-color-profile=srgb", "--hide-scrollbars", "--remote-debugging-pipe")

# Runs in the child before Chromium: puts the two pipe ends on descriptors 3 and 4, then execs.
_LAUNCH = ("import os, sys; r, w = int(sys.argv[1]), int(sys.argv[2]); os.dup2(r, 3); os.dup2(w, 4); "
           "os.close(r); os.close(w); os.execv(sys.argv[3], sys.argv[3:])")


def find_chromium() -> str | None:
    """The Chromium executable on PATH (Debian's ``chromium``), or None."""
    for name in ("chromium", "chromium-browser"):
        path = shutil.which(name)
        if path:
            return path
    return None


class BrowserError(RuntimeError):
    """The browser answered a command with an error, closed the pipe or did not answer in time."""


def _high_fd(fd: int) -> int:
    """A close-on-exec copy of ``fd`` numbered 10 or more (clear of 3 and 4), closing ``fd``."""
    import fcntl

    high = fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 10)
    os.close(fd)
    return high


class Browser:
    """A headless Chromium with a fresh profile; use as a context manager."""

    def __init__(self, executable: str | None = None, timeout: float = 30.0):
        self.executable = executable or find_chromium()
        if self.executable is None:
            raise BrowserError("chromium is not installed")
        self.timeout = timeout
        self._profile = tempfile.mkdtemp(prefix="lrpjax-chromium-")
        child_in, self._out = map(_high_fd, os.pipe())    # we write, Chromium reads fd 3
        self._in, child_out = map(_high_fd, os.pipe())    # Chromium writes fd 4, we read
        argv = [sys.executable, "-c", _LAUNCH, str(child_in), str(child_out), self.executable, *FLAGS,
                f"--user-data-dir={self._profile}", "about:blank"]
        self._log = tempfile.TemporaryFile()
        self.process = subprocess.Popen(argv, pass_fds=(child_in, child_out), stdin=subprocess.DEVNULL,
                                        stdout=self._log, stderr=self._log)
        os.close(child_in)
        os.close(child_out)
        self._buffer = b""
        self._next_id = 0
        self._events: list[dict] = []

    def __enter__(self) -> Browser:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def log(self) -> str:
        """What Chromium wrote on stdout and stderr (for failure messages)."""
        self._log.seek(0)
        return self._log.read().decode("utf-8", "replace")[-4000:]

    def send(self, method: str, params: dict | None = None, session: str | None = None) -> dict:
        """Sends one command and waits for its answer; returns its ``result``."""
        self._next_id += 1
        message = {"id": self._next_id, "method": method, "params": params or {}}
        if session is not None:
            message["sessionId"] = session
        os.write(self._out, json.dumps(message).encode() + b"\0")
        answer = self._wait(lambda m: m.get("id") == message["id"], f"the answer to {method}")
        if "error" in answer:
            raise BrowserError(f"{method}: {answer['error']}")
        return answer.get("result", {})

    def wait_event(self, name: str, session: str | None = None) -> dict:
        """Waits for the event ``name`` (one already received counts); returns its params."""
        def match(m):
            return m.get("method") == name and (session is None or m.get("sessionId") == session)
        for k, event in enumerate(self._events):
            if match(event):
                return self._events.pop(k).get("params", {})
        return self._wait(match, f"the event {name}", keep_events=True).get("params", {})

    def _wait(self, match, what: str, keep_events: bool = True) -> dict:
        deadline = time.monotonic() + self.timeout
        while True:
            while b"\0" in self._buffer:
                raw, self._buffer = self._buffer.split(b"\0", 1)
                message = json.loads(raw)
                if match(message):
                    return message
                if "method" in message and keep_events:
                    self._events.append(message)
            left = deadline - time.monotonic()
            if left <= 0:
                raise BrowserError(f"no {what} within {self.timeout} s; chromium log:\n{self.log()}")
            ready, _, _ = select.select([self._in], [], [], left)
            if ready:
                chunk = os.read(self._in, 1 << 20)
                if not chunk:
                    raise BrowserError(f"chromium closed the pipe while waiting for {what}; log:\n{self.log()}")
                self._buffer += chunk

    def open(self, url: str, width: int = 1200, height: int = 900) -> Page:
        """A new tab showing ``url`` (loaded), with a viewport of ``width`` x ``height`` CSS pixels."""
        target = self.send("Target.createTarget", {"url": "about:blank"})["targetId"]
        session = self.send("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        page = Page(self, session)
        page.send("Page.enable")
        page.send("Emulation.setDeviceMetricsOverride",
                  {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False})
        page.send("Page.navigate", {"url": url})
        self.wait_event("Page.loadEventFired", session)
        return page

    def close(self) -> None:
        """Closes the browser (killing it if it does not exit) and removes its profile."""
        if self.process.poll() is None:
            try:
                self.send("Browser.close")
            except (BrowserError, OSError):
                pass
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
        for fd in (self._in, self._out):
            try:
                os.close(fd)
            except OSError:
                pass
        self._log.close()
        shutil.rmtree(self._profile, ignore_errors=True)


class Page:
    """One tab of a :class:`Browser`."""

    def __init__(self, browser: Browser, session: str):
        self.browser, self.session = browser, session

    def send(self, method: str, params: dict | None = None) -> dict:
        return self.browser.send(method, params, self.session)

    def evaluate(self, expression: str):
        """The value of a JavaScript expression (JSON-able values come back as Python values)."""
        result = self.send("Runtime.evaluate", {"expression": expression, "returnByValue": True,
                                                "awaitPromise": True})
        if "exceptionDetails" in result:
            raise BrowserError(f"JavaScript error: {result['exceptionDetails']}")
        return result["result"].get("value")

    def screenshot(self) -> np.ndarray:
        """The viewport as RGB pixels, shape (height, width, 3), uint8."""
        from PIL import Image

        data = base64.b64decode(self.send("Page.captureScreenshot", {"format": "png"})["data"])
        return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))

    def click(self, x: float, y: float) -> None:
        """A left mouse click at viewport position (x, y), as a user's: move, press, release."""
        for kind in ("mouseMoved", "mousePressed", "mouseReleased"):
            params = {"type": kind, "x": x, "y": y}
            if kind != "mouseMoved":
                params.update(button="left", clickCount=1)
            self.send("Input.dispatchMouseEvent", params)

    def type_text(self, text: str) -> None:
        """Types ``text`` into the focused element (fires ``input`` events as typing does)."""
        self.send("Input.insertText", {"text": text})

    def box(self, selector: str) -> dict:
        """The bounding box ``{x, y, width, height}`` (viewport CSS pixels) of the first match."""
        box = self.evaluate(f"(function () {{ var e = document.querySelector({json.dumps(selector)}); "
                            "if (!e) return null; var r = e.getBoundingClientRect(); "
                            "return {x: r.x, y: r.y, width: r.width, height: r.height}; })()")
        if box is None:
            raise BrowserError(f"no element matches {selector!r}")
        return box
