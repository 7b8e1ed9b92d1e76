"""The template site's pages of the default project's reference, generated from a bake by the
project's own generator (`docs/hooks/reference_pages.py` of the payload), so the template docs
show the same pages `make docs` builds in a generated project and nothing is written twice.

scripts/bake.sh build && make -C build/shop-recommender setup
python scripts/reference_pages.py --write build/shop-recommender  # rewrite docs/reference/project/
python scripts/reference_pages.py --check build/shop-recommender  # exit 1 naming stale pages

The bake's docs/runbooks.md, when the payload has one, is copied beside them.
"""

import argparse
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "docs" / "reference" / "project"
GENERATOR = Path("docs/hooks/reference_pages.py")
COPIED = {"runbooks.md": Path("docs/runbooks.md")}
BANNER = (
    "> The default project's page, made from a bake of the template by "
    "`scripts/reference_pages.py` with the project's own generator: change the payload's "
    "source, then run it with `--write`."
)
COPY_BANNER = (
    "> The default project's `{source}`, copied from a bake of the template by "
    "`scripts/reference_pages.py`: edit the payload's, then run it with `--write`."
)


class BakeError(Exception):
    pass


def with_banner(text: str, banner: str = BANNER) -> str:
    """The page with the template's note under its title."""
    title, _, rest = text.partition("\n")
    return f"{title}\n\n{banner}\n{rest}"


def project_pages(bake: Path) -> dict[str, str]:
    """The pages of the bake at `bake` (after its `make setup`): file name -> Markdown."""
    python = bake / ".venv" / "bin" / "python"
    if not (bake / GENERATOR).is_file():
        raise BakeError(f"{bake} is not a bake of this template: no {GENERATOR}")
    if not python.is_file():
        raise BakeError(f"{python} is missing: run `make setup` in {bake} first")
    done = subprocess.run(
        [str(python), str(GENERATOR), "--json"], cwd=bake, capture_output=True, text=True
    )
    if done.returncode != 0:
        raise BakeError(f"the bake's generator failed:\n{done.stderr.strip()}")
    pages = {name: with_banner(text) for name, text in json.loads(done.stdout).items()}
    for name, source in COPIED.items():
        if (bake / source).is_file():
            banner = COPY_BANNER.format(source=source)
            pages[name] = with_banner((bake / source).read_text(), banner)
    return pages


def main(argv: list[str] | None = None) -> int:
    options = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    mode = options.add_mutually_exclusive_group(required=True)
    mode.add_argument("--write", type=Path, metavar="BAKE", help="rewrite the pages from BAKE")
    mode.add_argument("--check", type=Path, metavar="BAKE", help="exit 1 if a page is stale")
    args = options.parse_args(argv)
    bake = (args.write or args.check).resolve()
    try:
        pages = project_pages(bake)
    except BakeError as error:
        print(f"ERROR: {error}", file=sys.stderr)
        return 2
    current = {path.name: path.read_text() for path in OUT.glob("*.md")} if OUT.is_dir() else {}
    stale = sorted(name for name in pages if current.get(name) != pages[name])
    extra = sorted(set(current) - set(pages))
    if args.check:
        if stale or extra:
            where = OUT.relative_to(ROOT)
            for name in stale:
                print(f"stale: {where / name} (run scripts/reference_pages.py --write <bake>)")
            for name in extra:
                print(f"not generated any more: {where / name}")
            return 1
        return 0
    OUT.mkdir(parents=True, exist_ok=True)
    for name in stale:
        (OUT / name).write_text(pages[name])
    for name in extra:
        (OUT / name).unlink()
    print(f"{len(stale)} page(s) written, {len(extra)} removed in {OUT.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
