"""The HTML report opens in headless Chromium with no console errors (issue #6).

Chromium is driven over the DevTools protocol on a pipe (``--remote-debugging-pipe``: fd 3
carries commands in, fd 4 answers out), so the test sees console errors, uncaught
exceptions and failed loads as structured events, and takes a full-page screenshot.
Skipped with a reason where no ``chromium`` binary is installed (Debian: ``apt-get
install chromium``). Set ``EQFORGE_SCREENSHOT=path.png`` to keep the screenshot.
"""

from __future__ import annotations

import base64
import fcntl
import json
import os
import select
import shutil
import subprocess
import time
from pathlib import Path

import pytest
from test_hygiene import build_hostile_run  # an agent run with hostile model text (tests/test_hygiene.py)
from test_report import build_report_run  # the same cached run as tests/test_report.py

pytestmark = pytest.mark.browser


@pytest.fixture(scope="session")
def report_run(tmp_path_factory: pytest.TempPathFactory, llmsr_data: Path) -> Path:
    return build_report_run(tmp_path_factory.mktemp("report"), llmsr_data)

BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--hide-scrollbars", "--remote-debugging-pipe"]


def _browser() -> str:
    for name in BROWSERS:
        path = shutil.which(name)
        if path:
            return path
    pytest.skip("no chromium binary on PATH (install Debian's `chromium` to run browser tests)")


class DevTools:
    """Minimal Chrome DevTools protocol client over ``--remote-debugging-pipe``."""

    def __init__(self, binary: str, profile: Path) -> None:
        cmd_r, self.cmd_w = os.pipe()
        self.resp_r, resp_w = os.pipe()
        # move the child's ends above 9 so that placing them at 3 and 4 clobbers nothing
        for_child = [fcntl.fcntl(fd, fcntl.F_DUPFD, 10) for fd in (cmd_r, resp_w)]
        os.close(cmd_r)
        os.close(resp_w)
        cmd_r, resp_w = for_child

        def place() -> None:  # in the child, before exec: fd 3 reads commands, fd 4 answers
            os.dup2(cmd_r, 3)
            os.dup2(resp_w, 4)

        self.proc = subprocess.Popen(
            [binary, *FLAGS, f"--user-data-dir={profile}", "about:blank"],
            preexec_fn=place, close_fds=False,  # single-threaded test helper
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        os.close(cmd_r)
        os.close(resp_w)
        self.buf = b""
        self.next_id = 0
        self.events: list[dict] = []

    def _read(self, deadline: float) -> dict | None:
        while b"\0" not in self.buf:
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            ready, _, _ = select.select([self.resp_r], [], [], left)
            if not ready:
                return None
            chunk = os.read(self.resp_r, 1 << 20)
            if not chunk:
                raise RuntimeError("chromium closed the DevTools pipe")
            self.buf += chunk
        msg, _, self.buf = self.buf.partition(b"\0")
        return json.loads(msg)

    def call(self, method: str, params: dict | None = None, session: str | None = None,
             timeout: float = 30.0) -> dict:
        self.next_id += 1
        msg: dict = {"id": self.next_id, "method": method, "params": params or {}}
        if session:
            msg["sessionId"] = session
        os.write(self.cmd_w, json.dumps(msg).encode() + b"\0")
        deadline = time.monotonic() + timeout
        while True:
            reply = self._read(deadline)
            if reply is None:
                raise TimeoutError(method)
            if reply.get("id") == self.next_id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply.get("result", {})
            self.events.append(reply)

    def wait_event(self, method: str, timeout: float = 30.0) -> dict | None:
        deadline = time.monotonic() + timeout
        for ev in self.events:
            if ev.get("method") == method:
                return ev
        while True:
            ev = self._read(deadline)
            if ev is None:
                return None
            self.events.append(ev)
            if ev.get("method") == method:
                return ev

    def drain(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while (ev := self._read(deadline)) is not None:
            self.events.append(ev)

    def close(self) -> None:
        try:
            self.call("Browser.close", timeout=5)
        except Exception:  # noqa: BLE001 - it is going away either way
            pass
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        os.close(self.cmd_w)
        os.close(self.resp_r)


def console_errors(events: list[dict]) -> list[str]:
    out = []
    for ev in events:
        method, p = ev.get("method"), ev.get("params", {})
        if method == "Runtime.exceptionThrown":
            d = p.get("exceptionDetails", {})
            out.append(f"exception: {d.get('exception', {}).get('description') or d.get('text')}"
                       f" at {d.get('url')}:{d.get('lineNumber')}")
        elif method == "Runtime.consoleAPICalled" and p.get("type") in ("error", "assert",
                                                                          "warning"):
            args = [a.get("value", a.get("description")) for a in p.get("args", [])]
            out.append(f"console.{p.get('type')}: {args}")
        elif method == "Log.entryAdded" and p.get("entry", {}).get("level") in ("error",
                                                                               "warning"):
            e = p["entry"]
            out.append(f"log {e.get('source')}: {e.get('text')} {e.get('url', '')}")
    return out


def open_page(binary: str, url: str, profile: Path, width: int = 1200,
              ) -> tuple[list[str], bytes, dict]:
    """Load ``url``; return console errors, a full-page PNG and page facts."""
    dt = DevTools(binary, profile)
    try:
        target = dt.call("Target.createTarget", {"url": "about:blank"})["targetId"]
        sid = dt.call("Target.attachToTarget", {"targetId": target, "flatten": True})[
            "sessionId"]
        for domain in ("Runtime.enable", "Log.enable", "Page.enable"):
            dt.call(domain, session=sid)
        dt.call("Emulation.setDeviceMetricsOverride",
                {"width": width, "height": 900, "deviceScaleFactor": 1, "mobile": False},
                session=sid)
        dt.call("Page.navigate", {"url": url}, session=sid)
        assert dt.wait_event("Page.loadEventFired", timeout=60), "the page never loaded"
        dt.drain(1.0)
        facts = dt.call("Runtime.evaluate", {"returnByValue": True, "expression": (
            "JSON.stringify({title: document.title,"
            " images: Array.from(document.images).map(i => [i.alt, i.naturalWidth]),"
            " maths: document.getElementsByTagName('math').length,"
            " pwned: typeof window.__pwned, scripts: document.scripts.length,"
            " text: document.body.innerText})")}, session=sid)
        info = json.loads(facts["result"]["value"])
        size = dt.call("Page.getLayoutMetrics", session=sid)["cssContentSize"]
        shot = dt.call("Page.captureScreenshot", {
            "format": "png", "captureBeyondViewport": True,
            "clip": {"x": 0, "y": 0, "width": width, "height": size["height"], "scale": 1}},
            session=sid)
        png = base64.b64decode(shot["data"])
        return console_errors(dt.events), png, info
    finally:
        dt.close()


def test_devtools_sees_console_errors(tmp_path: Path) -> None:
    """The harness itself: a page with errors is caught (so a pass means something)."""
    binary = _browser()
    page = tmp_path / "bad.html"
    page.write_text("<!DOCTYPE html><html><head><meta charset='utf-8'><title>bad</title>"
                    "</head><body><p>x</p><script>console.error('boom');nope();</script>"
                    "</body></html>")
    errors, png, info = open_page(binary, page.as_uri(), tmp_path / "profile")
    assert info["title"] == "bad"
    assert any("boom" in e for e in errors) and any("nope" in e for e in errors), errors
    assert png.startswith(b"\x89PNG")


def test_report_opens_without_console_errors(report_run: Path, tmp_path: Path) -> None:
    binary = _browser()
    html_path = report_run / "report.html"
    assert html_path.exists()
    errors, png, info = open_page(binary, html_path.resolve().as_uri(), tmp_path / "profile")
    assert errors == [], errors
    assert "oscillator1" in info["title"]
    # every embedded image decoded (naturalWidth > 0), MathML tables present
    assert info["images"] and all(w > 0 for _alt, w in info["images"]), info["images"]
    assert info["maths"] >= 2
    text = info["text"]
    for heading in ("Best equation", "Top equations", "Pareto front", "Search progress",
                    "Valid programs and failures", "held-out data", "Configuration"):
        assert heading in text
    assert "recovered" in text and "not recovered" not in text.split("Top equations")[0]
    assert png.startswith(b"\x89PNG") and len(png) > 50_000
    keep = os.environ.get("EQFORGE_SCREENSHOT")
    if keep:
        Path(keep).write_bytes(png)


@pytest.fixture(scope="session")
def hostile_run(tmp_path_factory: pytest.TempPathFactory, llmsr_data: Path) -> Path:
    return build_hostile_run(tmp_path_factory.mktemp("hostile"), llmsr_data)[0]


def test_hostile_reports_run_no_script(hostile_run: Path, tmp_path: Path) -> None:
    """Model text with <script>, <img onerror>, four backticks, escapes and a lone surrogate:
    the HTML report, and the markdown report rendered by a renderer that passes raw HTML
    through (markdown-it, html enabled), run no script and log no error."""
    from markdown_it import MarkdownIt

    binary = _browser()
    md_html = hostile_run / "report_md.html"  # beside the PNGs the markdown links
    body = MarkdownIt("commonmark", {"html": True}).render((hostile_run / "report.md").read_text(encoding="utf-8"))
    md_html.write_text("<!DOCTYPE html><html><head><meta charset='utf-8'><title>md</title>"
                       f"<link rel='icon' href='data:,'></head><body>{body}</body></html>", encoding="utf-8")
    for page in (hostile_run / "report.html", md_html):
        errors, _png, info = open_page(binary, page.resolve().as_uri(), tmp_path / f"profile-{page.stem}")
        assert errors == [], (page.name, errors)
        assert info["pwned"] == "undefined" and info["scripts"] == 0, (page.name, info["pwned"])
        assert "window.__pwned=1" in info["text"]  # shown as text
        assert "How the best equation was found" in info["text"]
