"""Open pages in a real headless browser (Debian's chromium, driven by playwright) and say what
a reader would see go wrong: console errors, script errors, failed or refused requests, requests
to another host, images that did not load, mermaid diagrams that were not drawn.

    require_chromium()  # in a test
    with serve(site) as base, Browser() as browser:
        report = browser.visit(f"{base}/index.html")
        assert not report.problems(), report.problems()

Every request to a host other than this machine is recorded and refused, so a page that works
only online fails here, and nothing leaves the machine.
"""

from __future__ import annotations

import functools
import html
import os
import re
import shutil
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlsplit

CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
LOCAL_HOSTS = {"127.0.0.1", "localhost", "::1", "[::1]"}
# Schemes that never reach the network.
INLINE_SCHEMES = {"data", "blob", "about", "chrome-extension"}
# Material draws a diagram into a closed shadow root; the pages are opened with shadow roots
# open so the check can look inside (what is drawn is the same).
OPEN_SHADOW_ROOTS = """
const attach = Element.prototype.attachShadow;
Element.prototype.attachShadow = function (options) {
  return attach.call(this, { ...options, mode: "open" });
};
"""
# A ```mermaid fence as mkdocs writes it (pymdownx.superfences' custom fence).
MERMAID_SOURCE = re.compile(r'<pre class="mermaid"><code>(.*?)</code></pre>', re.S)

INSPECT = """
(sources) => {
  const roots = [document];
  for (const el of document.querySelectorAll("*")) if (el.shadowRoot) roots.push(el.shadowRoot);
  const all = (selector) => roots.flatMap((root) => [...root.querySelectorAll(selector)]);
  const drawn = [...document.querySelectorAll("div.mermaid")].filter((div) => {
    const svg = div.shadowRoot && div.shadowRoot.querySelector("svg");
    if (!svg || svg.getAttribute("aria-roledescription") === "error") return false;
    const box = svg.getBoundingClientRect();
    return box.width > 0 && box.height > 0;
  }).length;
  const texts = new Set([...document.querySelectorAll("pre")].map((pre) => pre.textContent));
  return {
    drawn,
    undrawn: sources.filter((source) => texts.has(source)),
    errorDiagrams: all('svg[aria-roledescription="error"]').map(
      (svg) => [...svg.querySelectorAll("text")].map((t) => t.textContent).join(" ").trim()),
    brokenImages: [...document.images].filter((img) => !img.complete || img.naturalWidth === 0)
      .map((img) => img.getAttribute("src")),
    images: document.images.length,
    canvases: [...document.querySelectorAll("canvas")].map((c) => {
      const b = c.getBoundingClientRect(); return [b.width, b.height]; }),
    svgs: [...document.querySelectorAll("svg")].filter((svg) => !svg.closest("svg svg, a, button"))
      .map((svg) => { const b = svg.getBoundingClientRect(); return [b.width, b.height]; }),
    links: [...document.querySelectorAll("a[href]")].map((a) => a.href),
    ids: [...document.querySelectorAll("[id]")].map((el) => el.id),
    title: document.title,
  };
}
"""


def missing_chromium() -> str | None:
    """Why a browser cannot be opened here, or None."""
    if not (Path(CHROMIUM).is_file() or shutil.which(CHROMIUM)):
        return f"chromium not found at {CHROMIUM} (Debian: apt-get install chromium)"
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "playwright is not installed in the template venv: run `make setup`"
    return None


def require_chromium() -> None:
    """In a test: skip without chromium or playwright, unless REQUIRE_CHROMIUM=1 (CI) makes it
    a failure."""
    import pytest

    missing = missing_chromium()
    if missing and os.environ.get("REQUIRE_CHROMIUM") == "1":
        pytest.fail(f"REQUIRE_CHROMIUM=1 but {missing}")
    if missing:
        pytest.skip(missing)


@dataclass
class PageReport:
    """What one page did in the browser."""

    url: str
    title: str = ""
    status: int | None = None
    console_errors: list[str] = field(default_factory=list)
    page_errors: list[str] = field(default_factory=list)
    failed_requests: list[str] = field(default_factory=list)
    external_requests: list[str] = field(default_factory=list)
    broken_images: list[str] = field(default_factory=list)
    images: int = 0
    # Top-level <svg> elements (inline plots, icons) and <canvas> elements: their drawn size.
    svgs: list[tuple[float, float]] = field(default_factory=list)
    canvases: list[tuple[float, float]] = field(default_factory=list)
    diagrams: int = 0  # mermaid fences in the page as served
    drawn_diagrams: int = 0
    undrawn_diagrams: list[str] = field(default_factory=list)
    error_diagrams: list[str] = field(default_factory=list)
    links: list[str] = field(default_factory=list)
    ids: set[str] = field(default_factory=set)

    def problems(self) -> list[str]:
        """Each thing wrong with the page, in words that name it."""
        found = []
        if self.status is not None and self.status >= 400:
            found.append(f"{self.url}: HTTP {self.status}")
        found += [f"{self.url}: console error: {text}" for text in self.console_errors]
        found += [f"{self.url}: page error: {text}" for text in self.page_errors]
        found += [f"{self.url}: failed request: {text}" for text in self.failed_requests]
        found += [f"{self.url}: external request: {url}" for url in self.external_requests]
        found += [f"{self.url}: broken image: {src}" for src in self.broken_images]
        found += [
            f"{self.url}: mermaid diagram not drawn: {source[:80]!r}"
            for source in self.undrawn_diagrams
        ]
        found += [
            f"{self.url}: mermaid drew its error diagram: {text[:120]!r}"
            for text in self.error_diagrams
        ]
        return found


def _is_local(url: str) -> bool:
    parts = urlsplit(url)
    return parts.scheme in INLINE_SCHEMES or (parts.hostname or "") in LOCAL_HOSTS


class Browser:
    """One headless chromium for many pages; a fresh context (no cache, no cookies) per page."""

    def __init__(self, width: int = 1280, height: int = 900):
        self.viewport = {"width": width, "height": height}

    def __enter__(self) -> Browser:
        missing = missing_chromium()
        if missing:
            raise RuntimeError(missing)
        from playwright.sync_api import sync_playwright

        self._playwright = sync_playwright().start()
        self._browser = self._playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=["--no-sandbox"]
        )
        return self

    def __exit__(self, *exc) -> None:
        self._browser.close()
        self._playwright.stop()

    @contextmanager
    def page(self, report: PageReport, device_scale_factor: float = 1) -> Iterator:
        """A page whose events are recorded in `report`; requests off this machine refused."""
        context = self._browser.new_context(
            viewport=self.viewport, device_scale_factor=device_scale_factor
        )
        context.add_init_script(OPEN_SHADOW_ROOTS)
        refused: set[str] = set()

        def route(route):
            url = route.request.url
            if _is_local(url):
                route.continue_()
            else:
                report.external_requests.append(url)
                refused.add(url)
                route.abort("blockedbyclient")

        context.route("**/*", route)
        page = context.new_page()
        page.on(
            "console",
            lambda msg: (
                msg.type == "error"
                and not _refusal_echo(msg.text, refused)
                and report.console_errors.append(msg.text)
            ),
        )
        page.on("pageerror", lambda error: report.page_errors.append(str(error)))
        page.on(
            "requestfailed",
            lambda request: (
                request.url not in refused
                and report.failed_requests.append(f"{request.url} ({request.failure})")
            ),
        )
        page.on(
            "response",
            lambda response: (
                response.status >= 400
                and response.url != report.url
                and report.failed_requests.append(f"{response.url} (HTTP {response.status})")
            ),
        )
        try:
            yield page
        finally:
            context.close()

    def visit(self, url: str, diagrams_within: float = 10.0) -> PageReport:
        """Load `url`, wait for its mermaid diagrams (up to `diagrams_within` seconds) and
        report what went wrong."""
        report = PageReport(url)
        with self.page(report) as page:
            self._load(page, report, diagrams_within)
        return report

    def screenshot(
        self,
        url: str,
        out: Path,
        selector: str | None = None,
        between: tuple[str, str] | None = None,
        **options,
    ) -> PageReport:
        """Load `url` and save a PNG to `out`: of the first `selector` match, of the part of the
        page from the heading whose text is `between[0]` to the one that is `between[1]`, or
        of the page (playwright's screenshot `options`, e.g. clip)."""
        report = PageReport(url)
        with self.page(report, device_scale_factor=options.pop("scale", 1)) as page:
            self._load(page, report, 10.0)
            if selector:
                target = page.locator(selector).first
                target.scroll_into_view_if_needed()
                target.screenshot(path=str(out), **options)
                return report
            if between:
                top, bottom = (
                    page.get_by_role("heading", name=text, exact=True).first.bounding_box()["y"]
                    for text in between
                )
                width = self.viewport["width"]
                options.update(clip={"x": 0, "y": top - 16, "width": width, "height": bottom - top})
                options["full_page"] = True
            page.screenshot(path=str(out), **options)
        return report

    def _load(self, page, report: PageReport, diagrams_within: float) -> None:
        response = page.goto(report.url, wait_until="load")
        report.status = response.status if response else None
        served = response.text() if response else ""
        sources = [html.unescape(s) for s in MERMAID_SOURCE.findall(served)]
        report.diagrams = len(sources)
        deadline = time.monotonic() + diagrams_within
        while True:
            page.wait_for_timeout(100)
            seen = page.evaluate(INSPECT, sources)
            settled = seen["drawn"] + len(seen["errorDiagrams"]) >= len(sources)
            if settled or report.page_errors or time.monotonic() > deadline:
                break
        page.wait_for_timeout(100)  # a last error after the diagrams
        seen = page.evaluate(INSPECT, sources)
        report.title = seen["title"]
        report.drawn_diagrams = seen["drawn"]
        report.undrawn_diagrams = seen["undrawn"]
        report.error_diagrams = seen["errorDiagrams"]
        report.broken_images = seen["brokenImages"]
        report.images = seen["images"]
        report.svgs = [tuple(size) for size in seen["svgs"]]
        report.canvases = [tuple(size) for size in seen["canvases"]]
        report.links = seen["links"]
        report.ids = set(seen["ids"])


def _refusal_echo(text: str, refused: set[str]) -> bool:
    """chromium's console line for a request this module refused (already reported)."""
    return bool(refused) and "net::ERR_BLOCKED_BY_CLIENT" in text


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format, *args):
        pass


@contextmanager
def serve(directory: Path) -> Iterator[str]:
    """Serve `directory` over HTTP on a free local port; yields the base URL (no slash)."""
    handler = functools.partial(_QuietHandler, directory=str(directory))
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
