"""mkdocs hook: serve mermaid from the site itself instead of a CDN.

Material for MkDocs draws ```mermaid fences with the `mermaid` global when a page defines it and
fetches the library from unpkg.com otherwise, which fails offline and leaks a request. This hook
copies the npm package that `make setup` installs under .tools/node into the built site and loads
it, before Material's bundle, on the pages that hold a diagram. Without the file the build stops
and says how to get it.
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

from mkdocs.exceptions import PluginError

# The npm package pinned in the Makefile (MERMAID), in the template's root; MERMAID_JS names
# another copy.
ROOT = Path(__file__).resolve().parents[1]
SOURCE = Path(".tools/node/node_modules/mermaid/dist/mermaid.min.js")
TARGET = "assets/javascripts/mermaid.min.js"
BUNDLE = re.compile(r'<script src="([^"]*)assets/javascripts/bundle\.[0-9a-f]+\.min\.js"></script>')
DIAGRAM = 'class="mermaid"'


def source_file() -> Path:
    return Path(os.environ.get("MERMAID_JS") or ROOT / SOURCE)


def on_config(config):
    source = source_file()
    if not source.is_file():
        raise PluginError(
            f"mermaid is missing: {source} not found. Run `make setup` with Node's npm on PATH "
            "(it installs the pinned mermaid package there); the docs draw their diagrams with "
            "it and never fetch it from a CDN."
        )
    return config


def on_post_page(output: str, page, config) -> str:
    """Load the local mermaid before Material's bundle on a page with a diagram."""
    if DIAGRAM not in output:
        return output
    bundle = BUNDLE.search(output)
    if bundle is None:
        raise PluginError(f"{page.file.src_uri}: Material's bundle script not found")
    script = f'<script src="{bundle.group(1)}{TARGET}"></script>\n'
    return output[: bundle.start()] + script + output[bundle.start() :]


def on_post_build(config) -> None:
    target = Path(config["site_dir"]) / TARGET
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(source_file(), target)
