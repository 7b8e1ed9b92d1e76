"""Screenshot a generated project's reports for the template docs (docs/pictures.md).

    .venv/bin/python scripts/doc_pictures.py build/shop-recommender   # after its `make demo`

Runs `make model-card` in the project, serves its reports/ folder on a local port and saves, with
headless chromium (tests/browser.py), the model card's NDCG@k and recall@k plots, the top of the
evidently drift report and of the locust report into docs/assets/pictures/. A page that asks for
another host or raises a script error stops the script: the pictures show what renders offline.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.browser import Browser, serve  # noqa: E402  (the template root on sys.path first)

OUT = ROOT / "docs" / "assets" / "pictures"
MAX_BYTES = 200_000
# locust's saved report names its web UI's favicon at an absolute path no saved file serves.
LOCUST_FAVICON = "/assets/favicon-light.png"

# name: (page under reports/, what to shoot: an element's selector, the part between two
# headings, or the top of the page that high)
PICTURES = {
    "ndcg-at-k.png": ("model-card.html", "#plot-ndcg_at_k svg"),
    "recall-at-k.png": ("model-card.html", "#plot-recall_at_k svg"),
    "drift-report.png": ("drift/data_drift.html", 1080),
    "locust-report.png": ("loadtest/locust.html", 1240),
    "locust-charts.png": ("loadtest/locust.html", ("Charts", "Final ratio")),
}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("project", type=Path, help="a generated project after `make demo`")
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    reports = args.project / "reports"
    for page in ("drift/data_drift.html", "loadtest/locust.html"):
        if not (reports / page).is_file():
            sys.exit(f"ERROR: {reports / page} not found: run `make demo` in {args.project}")
    subprocess.run(["make", "--no-print-directory", "model-card"], cwd=args.project, check=True)
    args.out.mkdir(parents=True, exist_ok=True)
    failed = False
    with serve(reports) as base, Browser(width=1100, height=800) as browser:
        for name, (page, part) in PICTURES.items():
            out = args.out / name
            url = f"{base}/{page}"
            if isinstance(part, str):
                report = browser.screenshot(url, out, selector=part)
            elif isinstance(part, tuple):
                report = browser.screenshot(url, out, between=part)
            else:
                top = {"x": 0, "y": 0, "width": 1100, "height": part}
                report = browser.screenshot(url, out, clip=top, full_page=True)
            problems = [
                p
                for p in report.problems()
                if not (page.startswith("loadtest/") and _favicon_only(p, report))
            ]
            size = out.stat().st_size
            print(f"{out.relative_to(ROOT) if out.is_relative_to(ROOT) else out}: {size:,} bytes")
            for problem in problems:
                print(f"  {problem}", file=sys.stderr)
            if problems or size > MAX_BYTES:
                failed = True
                if size > MAX_BYTES:
                    print(f"  larger than {MAX_BYTES:,} bytes", file=sys.stderr)
    return 1 if failed else 0


def _favicon_only(problem: str, report) -> bool:
    """locust's missing favicon (a 404 and chromium's console line for it), nothing else."""
    favicon = [r for r in report.failed_requests if LOCUST_FAVICON in r]
    return LOCUST_FAVICON in problem or (
        bool(favicon) and "status of 404" in problem and len(report.failed_requests) == 1
    )


if __name__ == "__main__":
    sys.exit(main())
