"""The rendered book in a real browser: headless Chromium (Debian's ``chromium``) driven by Playwright.

The book is built into ``_build/html`` (or ``BOOK_HTML`` points at a prebuilt one), served on
127.0.0.1 by a stdlib ``http.server`` thread, and every page is opened. For each page: no console
error, no failed request, no request to any host but the local server (the book works offline),
every ``<img>`` loaded with a non-zero natural size. On the explorer pages a control is moved and
the figure must change. Full-page screenshots go to ``_build/screenshots/``.

``make test`` installs the browser (``make browser-deps``); ``CHROMIUM`` overrides its path.
"""

from __future__ import annotations

import functools
import hashlib
import http.server
import os
import shutil
import subprocess
import sys
import threading
from pathlib import Path
from urllib.parse import urlparse

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCREENSHOTS = ROOT / "_build" / "screenshots"
CHROMIUM = os.environ.get("CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"


@pytest.fixture(scope="module")
def html_dir():
    if os.environ.get("BOOK_HTML"):
        path = Path(os.environ["BOOK_HTML"])
        if not (path / "index.html").exists():
            raise FileNotFoundError(f"BOOK_HTML={path}: no index.html there; build the book or unset BOOK_HTML")
        return path
    jb = Path(sys.executable).with_name("jupyter-book")
    subprocess.run([str(jb), "build", "book", "--config", "_config.yml", "--path-output", ".", "-W", "-n",
                    "--keep-going"], cwd=ROOT, check=True, capture_output=True)
    return ROOT / "_build" / "html"


@pytest.fixture(scope="module")
def server(html_dir):
    handler = functools.partial(_QuietHandler, directory=str(html_dir))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def browser():
    sync_api = pytest.importorskip("playwright.sync_api", reason="pip install -e '.[dev]' (playwright)")
    if not Path(CHROMIUM).exists():
        pytest.fail(f"no Chromium at {CHROMIUM}: run `make browser-deps` (apt-get install chromium) or set CHROMIUM")
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield b
        b.close()


def pages(html_dir) -> list[str]:
    """Every page but index.html, a meta-refresh redirect to the root page (its requests race the redirect)."""
    return sorted(p.name for p in Path(html_dir).glob("*.html") if p.name != "index.html")


class PageLog:
    """What one page did: every request, failed ones, console errors, uncaught exceptions."""

    def __init__(self, page, base: str):
        self.base, self.requests, self.failed, self.errors = base, [], [], []
        page.on("request", lambda r: self.requests.append(r.url))
        page.on("requestfailed", lambda r: self.failed.append(f"{r.url} ({r.failure})"))
        page.on("response", lambda r: r.status >= 400 and self.failed.append(f"{r.url} (HTTP {r.status})"))
        page.on("console", lambda m: m.type == "error" and self.errors.append(f"console: {m.text}"))
        page.on("pageerror", lambda e: self.errors.append(f"exception: {e}"))

    def foreign(self) -> list[str]:
        """Requests to anything but the local server (data: and blob: URLs stay in the page)."""
        host = urlparse(self.base).netloc
        return [u for u in self.requests if urlparse(u).scheme not in ("data", "blob", "about")
                and urlparse(u).netloc != host]


def open_page(browser, server, name):
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    log = PageLog(page, server)
    page.goto(f"{server}/{name}", wait_until="networkidle")
    page.wait_for_timeout(300)   # widget managers and figures render after load
    return page, log


def test_every_page_offline_and_clean(browser, server, html_dir):
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    names = pages(html_dir)
    assert {"intro.html", "data.html", "explore.html"} <= set(names), names
    total = 0
    for name in names:
        page, log = open_page(browser, server, name)
        images = page.evaluate("""() => Array.from(document.images).map(
            i => ({src: i.src.slice(0, 80), complete: i.complete, w: i.naturalWidth, h: i.naturalHeight}))""")
        page.screenshot(path=str(SCREENSHOTS / name.replace(".html", ".png")), full_page=True)
        page.close()
        total += len(log.requests)
        print(f"{name}: {len(log.requests)} requests, {len(images)} images")
        assert not log.foreign(), f"{name} requested other hosts: {log.foreign()}"
        assert not log.failed, f"{name}: failed requests {log.failed}"
        assert not log.errors, f"{name}: {log.errors}"
        broken = [i for i in images if not (i["complete"] and i["w"] > 0 and i["h"] > 0)]
        assert not broken, f"{name}: images not loaded {broken}"
    print(f"{len(names)} pages, {total} requests, screenshots in {SCREENSHOTS}")


def figure_state(page) -> str:
    """A digest of every plotly figure's traces as the browser holds them (data and visibility)."""
    return hashlib.sha256(page.evaluate("""() => JSON.stringify(Array.from(
        document.querySelectorAll('.js-plotly-plot')).map(gd => gd.data.map(
        t => [t.visible, t.x, t.y, t.z, t.source, t.text])))""").encode()).hexdigest()


def pick_dropdown(page, menu: int, option: int):
    """Open the ``menu``-th plotly dropdown and click its ``option``-th entry, as a reader does."""
    page.locator(".updatemenu-header-group").nth(menu).locator("rect").first.click(force=True)
    page.locator(".updatemenu-dropdown-button").nth(option).locator("rect").first.click(force=True)


def drag_slider(page, fraction: float):
    touch = page.locator(".slider-rail-touch-rect").first
    touch.scroll_into_view_if_needed()
    rail = touch.bounding_box()
    page.mouse.click(rail["x"] + fraction * rail["width"], rail["y"] + rail["height"] / 2)


@pytest.mark.parametrize("name, moves", [
    ("explore.html", [("dropdown", 0, 3), ("dropdown", 1, 2), ("slider", 0.9)]),
    ("data.html", [("slider", 0.6)]),
])
def test_explorer_controls_change_the_figure(browser, server, name, moves):
    page, log = open_page(browser, server, name)
    assert page.locator(".js-plotly-plot").count() >= 1, f"{name}: no plotly figure rendered"
    for i, move in enumerate(moves):
        before = figure_state(page)
        if move[0] == "dropdown":
            pick_dropdown(page, move[1], move[2])
        else:
            drag_slider(page, move[1])
        page.wait_for_timeout(500)
        assert figure_state(page) != before, f"{name}: moving {move} left the figure unchanged"
        page.screenshot(path=str(SCREENSHOTS / f"{name.replace('.html', '')}-control-{i}.png"), full_page=True)
    page.close()
    assert not log.foreign() and not log.failed and not log.errors, (log.foreign(), log.failed, log.errors)
