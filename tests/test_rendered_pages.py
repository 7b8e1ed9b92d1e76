"""The template's docs site as a reader sees it: built with `mkdocs build --strict`, served over
HTTP and opened page by page in headless chromium (tests/browser.py). Every page loads without
errors and without a request off this machine, every internal link and anchor resolves, every
image loads and every mermaid diagram is drawn. A site with one of each fault proves the check
names them.
"""

from __future__ import annotations

import os
import re
import subprocess
import urllib.error
import urllib.request
from pathlib import Path
from urllib.parse import unquote, urldefrag, urlsplit

import pytest

from tests import browser as browser_module
from tests.browser import Browser, PageReport, require_chromium, serve
from tests.conftest import TEMPLATE_ROOT, VENV_BIN

PICTURES = (
    "ndcg-at-k.png",
    "recall-at-k.png",
    "drift-report.png",
    "locust-report.png",
    "locust-charts.png",
)


def build(config: Path, site: Path, strict: bool = True, env: dict | None = None):
    return subprocess.run(
        [str(VENV_BIN / "mkdocs"), "build", "-f", str(config), "--site-dir", str(site)]
        + (["--strict"] if strict else []),
        capture_output=True,
        text=True,
        env=env,
    )


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    site = tmp_path_factory.mktemp("docs") / "site"
    result = build(TEMPLATE_ROOT / "mkdocs.yml", site)
    assert result.returncode == 0, result.stderr
    return site


def pages(site: Path) -> list[str]:
    """Every HTML page of a built site, relative to it."""
    return sorted(
        path.relative_to(site).as_posix()
        for path in site.rglob("*.html")
        if "assets" not in path.relative_to(site).parts
    )


def crawl(browser: Browser, site: Path, base: str) -> tuple[dict[str, PageReport], list[str]]:
    """Visit every page of `site` (served at `base`) and every local page they link to; return
    the reports and what is wrong with the links (a missing target or anchor)."""
    reports: dict[str, PageReport] = {}
    queue = [f"{base}/{page}" for page in pages(site)]
    links: list[tuple[str, str]] = []
    while queue:
        url = queue.pop()
        if url in reports:
            continue
        report = reports[url] = browser.visit(url)
        for href in report.links:
            if not href.startswith(base + "/"):
                continue  # another site (not fetched: the docs must not need the network)
            links.append((url, href))
            target = page_url(urldefrag(href).url)
            if target.endswith(".html") and target not in reports:
                queue.append(target)
    problems = []
    assets: dict[str, int] = {}
    for page, href in links:
        target, anchor = urldefrag(href)
        target = page_url(target)
        if target in reports:
            status = reports[target].status
            if anchor and status == 200 and unquote(anchor) not in reports[target].ids:
                problems.append(f"{page}: link to a missing anchor: {href}")
        else:
            status = assets.setdefault(target, http_status(target))
        if status != 200:
            problems.append(f"{page}: dead link (HTTP {status}): {href}")
    return reports, problems


def page_url(url: str) -> str:
    return url + "index.html" if url.endswith("/") else url


def http_status(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status
    except urllib.error.HTTPError as error:
        return error.code


def test_every_page_of_the_docs_renders(browser, site):
    """Every page of the template's site, and every local link in it, in chromium."""
    with serve(site) as base:
        reports, link_problems = crawl(browser, site, base)
    problems = [problem for report in reports.values() for problem in report.problems()]
    assert not problems + link_problems, "\n".join(problems + link_problems)
    visited = {urlsplit(url).path.lstrip("/") for url in reports}
    assert set(pages(site)) <= visited
    assert len(visited) >= 15
    diagrams = sum(report.diagrams for report in reports.values())
    assert diagrams >= 1 and diagrams == sum(r.drawn_diagrams for r in reports.values())
    # The pictures page shows each report, loaded.
    pictures = next(r for url, r in reports.items() if url.endswith("/pictures/index.html"))
    assert pictures.images >= len(PICTURES) and not pictures.broken_images
    for name in PICTURES:
        assert (site / "assets" / "pictures" / name).stat().st_size > 10_000


def test_the_pictures_are_small_and_committed():
    for name in PICTURES:
        picture = TEMPLATE_ROOT / "docs" / "assets" / "pictures" / name
        assert picture.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", name
        assert 10_000 < picture.stat().st_size <= 200_000, name


# --- The checker itself: a site with one of each fault ----------------------------------------

BROKEN_PAGE = """# Broken

A picture that is not there:

![a missing plot](missing.png)

A link to [a page that does not exist](nowhere.md) and [an anchor that does not](#no-such-part).

```mermaid
flowchart LR
  a --> b -->
```

```mermaid
flowchart LR
  fine --> drawn
```
"""


def site_config(tmp_path: Path, docs: dict[str, str]) -> Path:
    """A copy of the template's mkdocs.yml (same theme, extensions, hook) for `docs`."""
    folder = tmp_path / "docs"
    folder.mkdir()
    for name, text in docs.items():
        (folder / name).write_text(text)
    config = (TEMPLATE_ROOT / "mkdocs.yml").read_text()
    config = re.sub(r"(?ms)^nav:.*?(?=^\S)", "", config)
    config = config.replace("docs_dir: docs", f"docs_dir: {folder}")
    config = config.replace("- scripts/", f"- {TEMPLATE_ROOT / 'scripts'}/")
    path = tmp_path / "mkdocs.yml"
    path.write_text(config)
    return path


def test_the_check_names_a_broken_diagram_a_missing_image_and_a_dead_link(browser, tmp_path):
    config = site_config(tmp_path, {"index.md": "# Home\n\n[Broken](broken.md)\n"})
    (tmp_path / "docs" / "broken.md").write_text(BROKEN_PAGE)
    site = tmp_path / "site"
    # --strict refuses the dead link and the missing image; the browser must find them too.
    assert build(config, site).returncode != 0
    assert build(config, site, strict=False).returncode == 0
    with serve(site) as base:
        reports, link_problems = crawl(browser, site, base)
    broken = reports[f"{base}/broken/index.html"]
    problems = "\n".join(broken.problems() + link_problems)
    assert "broken image: missing.png" in problems
    assert "failed request: " in problems and "missing.png (HTTP 404)" in problems
    assert re.search(r"dead link \(HTTP 404\): \S+/broken/nowhere\.md", problems), problems
    assert re.search(r"link to a missing anchor: \S+#no-such-part", problems), problems
    assert broken.diagrams == 2 and broken.drawn_diagrams == 1
    assert "mermaid diagram not drawn: 'flowchart LR\\n  a --> b -->'" in problems, problems
    assert "mermaid drew its error diagram: 'Syntax error in text" in problems, problems
    assert "page error: Parse error on line 3" in problems, problems
    assert not reports[f"{base}/index.html"].problems()


def test_the_check_names_a_request_to_another_host(browser, site, tmp_path):
    """Material fetches mermaid from unpkg.com when the page does not load it: the built page
    without the hook's script tag, and one loading a web font, are reported (and refused)."""
    page = (site / "pictures" / "index.html").read_text()
    local = '<script src="../assets/javascripts/mermaid.min.js"></script>'
    assert -1 < page.find(local) < page.find("assets/javascripts/bundle.")  # `mermaid` first
    copy = tmp_path / "site"
    (copy / "pictures").mkdir(parents=True)
    (copy / "pictures" / "index.html").write_text(page.replace(local, ""))
    font_url = "https://fonts.googleapis.com/css?family=Roboto"
    font = f'<link rel="stylesheet" href="{font_url}">'
    (copy / "font.html").write_text(f"<html><head>{font}</head><body>text</body></html>")
    for asset in ("assets", "search"):
        (copy / asset).symlink_to(site / asset)
    with serve(copy) as base:
        cdn = browser.visit(f"{base}/pictures/index.html", diagrams_within=3)
        fonts = browser.visit(f"{base}/font.html")
    assert any(u.startswith("https://unpkg.com/mermaid@11/") for u in cdn.external_requests)
    assert cdn.drawn_diagrams == 0
    assert any("mermaid diagram not drawn" in p for p in cdn.problems()), cdn.problems()
    assert fonts.problems() == [f"{base}/font.html: external request: {font_url}"]


def test_the_docs_build_stops_without_the_local_mermaid(tmp_path):
    env = {**os.environ, "MERMAID_JS": str(tmp_path / "absent" / "mermaid.min.js")}
    result = build(TEMPLATE_ROOT / "mkdocs.yml", tmp_path / "site", env=env)
    assert result.returncode != 0
    assert "mermaid is missing" in result.stderr and "make setup" in result.stderr


def test_without_chromium_the_tests_skip_or_under_require_chromium_fail(monkeypatch, tmp_path):
    monkeypatch.setattr(browser_module, "CHROMIUM", str(tmp_path / "no-chromium"))
    monkeypatch.delenv("REQUIRE_CHROMIUM", raising=False)
    with pytest.raises(pytest.skip.Exception, match="chromium not found"):
        require_chromium()
    monkeypatch.setenv("REQUIRE_CHROMIUM", "1")
    with pytest.raises(pytest.fail.Exception, match="REQUIRE_CHROMIUM=1 but chromium not found"):
        require_chromium()
    with pytest.raises(RuntimeError, match="chromium not found"), Browser():
        pass
