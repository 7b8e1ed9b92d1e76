"""mkdocs hook: the site is the repository's own Markdown (every README.md and the other .md
files, each beside what it describes), so nothing is written twice and `make docs`
(`mkdocs build --strict`) fails on any broken link between them. The other files of the
repository are copied as they are, so a link to params.yaml or the Makefile resolves too."""

from __future__ import annotations

import subprocess
from pathlib import Path

from mkdocs.structure.files import File, Files

ROOT = Path(__file__).resolve().parents[2]
SITE = "site/"  # the site's output


def repository_files() -> list[str]:
    """git's list of the repository's files: committed or new, never ignored (.venv, data)."""
    listed = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT, capture_output=True, text=True, check=True,
    ).stdout.splitlines()  # fmt: skip
    return sorted(path for path in listed if not path.startswith(SITE) and (ROOT / path).is_file())


def on_files(files: Files, config) -> Files:
    # docs/'s own pages come back below under their repository path (docs/runbooks.md), so a
    # link to one reads the same on the site as in the repository.
    docs_dir = Path(config["docs_dir"]).resolve()
    for file in list(files):
        if file.abs_src_path and Path(file.abs_src_path).resolve().is_relative_to(docs_dir):
            files.remove(file)
    for path in repository_files():
        files.append(File(path, str(ROOT), config["site_dir"], config["use_directory_urls"]))
    return files
