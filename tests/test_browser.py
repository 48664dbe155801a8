"""The rendered book in a real browser: headless Chromium (Debian's ``chromium``) driven by Playwright.

The book is built into ``_build/html`` (or ``BOOK_HTML`` points at a prebuilt one), served on
127.0.0.1 by a stdlib ``http.server`` thread, and every page is opened. For each page: no console
error, no failed request, no request to any host but the local server (the book works offline),
every ``<img>`` loaded with a non-zero natural size. On the explorer pages a control is moved and
the figure must change. Full-page screenshots go to ``_build/screenshots/``. Every page reads like a
paper (:func:`reading_problems`, on the built HTML): no progress bar, no table cell cut short with
"...", and on the section pages no plain-text output longer than ``MAX_TEXT_LINES`` lines.

``make test`` installs the browser (``make browser-deps``); ``CHROMIUM`` overrides its path.
"""

from __future__ import annotations

import functools
import hashlib
import http.server
import os
import re
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
# the pages of Sections 3.2-3.5 and of the appendix analyses (C-F) and the status page: each reads like a paper
SECTION_PAGES = ("temporal_interaction.html", "video_language_integration.html", "answer_generation.html",
                 "effective_pathways.html", "reproduction_status.html", "appendix_open_ended.html",
                 "appendix_multi_token.html", "appendix_lens_attention.html", "appendix_long_videos.html",
                 "appendix_failure_cases.html", "appendix_robustness.html")
MAX_TEXT_LINES = 15
TEXT_BAR = re.compile(r"\d+%\|")  # tqdm's text bar: " 40%|####      | 4/10"


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


def reading_problems(page_html: str, section: bool) -> list[str]:
    """What keeps a built page from reading like a paper (empty: none): a progress-bar widget (in the
    page's saved widget state) or a text progress bar in an output; a table cell ending in "..." (a
    cell cut short); on a section page, a plain-text output (stream or text/plain) of more than
    ``MAX_TEXT_LINES`` lines."""
    from bs4 import BeautifulSoup

    soup = BeautifulSoup(page_html, "html.parser")
    problems = []
    for state in soup.find_all("script", type="application/vnd.jupyter.widget-state+json"):
        if "ProgressModel" in (state.string or ""):
            problems.append("a progress-bar widget")
    for output in soup.select("div.cell_output"):
        for cell in output.select("td, th"):
            text = cell.get_text().strip()
            if text.endswith(("...", "\u2026")):
                problems.append(f"a table cell cut short: {text[-60:]!r}")
        for pre in output.select("div.output pre"):
            text = pre.get_text()
            if TEXT_BAR.search(text):
                problems.append(f"a text progress bar: {TEXT_BAR.search(text).group()!r}")
            lines = len(text.rstrip("\n").splitlines())
            if section and lines > MAX_TEXT_LINES:
                problems.append(f"a plain-text output of {lines} lines: {text[:60]!r}")
    return problems


def test_every_page_reads_like_a_paper(html_dir):
    found = {name: reading_problems((Path(html_dir) / name).read_text(), name in SECTION_PAGES)
             for name in pages(html_dir)}
    assert set(SECTION_PAGES) <= set(found), sorted(found)
    found = {name: p for name, p in found.items() if p}
    assert not found, found


def _page(*outputs, state: str = "") -> str:
    widgets = f'<script type="application/vnd.jupyter.widget-state+json">{state}</script>' if state else ""
    cells = "".join(f'<div class="cell_output docutils container">{o}</div>' for o in outputs)
    return f"<html><head>{widgets}</head><body>{cells}</body></html>"


def _text(lines: int) -> str:
    return '<div class="output stream highlight-myst-ansi"><div class="highlight"><pre>' + \
        "\n".join(f"line {i}" for i in range(lines)) + "\n</pre></div></div>"


def test_reading_rules_fail_on_each_fault():
    """The rules above on small pages: a clean one passes, each fault fails it."""
    table = '<div class="output text_html"><table><tr><th>finding</th></tr><tr><td>{}</td></tr></table></div>'
    clean = _page(table.format("the whole finding"), _text(MAX_TEXT_LINES),
                  state='{"state": {"a": {"model_name": "LayoutModel"}}}')
    assert reading_problems(clean, section=True) == []
    progress = '{"state": {"a": {"model_name": "FloatProgressModel"}}}'
    assert reading_problems(_page(state=progress), section=False) == ["a progress-bar widget"]
    bar = '<div class="output stderr"><pre>sweep:  40%|####      | 4/10</pre></div>'
    assert "a text progress bar" in reading_problems(_page(bar), section=False)[0]
    cut = reading_problems(_page(table.format("What's the right option for how the scenes in ...")), section=False)
    assert cut and "cut short" in cut[0]
    long = _page(_text(MAX_TEXT_LINES + 1))
    assert "plain-text output of 16 lines" in reading_problems(long, section=True)[0]
    assert reading_problems(long, section=False) == []  # long text is only a fault on a section page
