"""Render the README's options table from cookiecutter.json, the single source of the options.

    python scripts/options_table.py          # rewrite the table in README.md
    python scripts/options_table.py --check  # exit 1 if README.md is out of date
"""

import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BEGIN, END = "<!-- options:begin -->", "<!-- options:end -->"


def options_table(config: dict) -> str:
    prompts = config.get("__prompts__", {})
    lines = ["| Option | Prompt | Default | Choices |", "| --- | --- | --- | --- |"]
    for name, value in config.items():
        if name.startswith("_"):
            continue
        if isinstance(value, list):
            default, choices = value[0], ", ".join(f"`{choice}`" for choice in value)
        else:
            default, choices = value, "free text"
        # A derived default is shown as its Jinja expression; pipes are escaped for the table.
        default = f"`{default}`".replace("|", "\\|")
        lines.append(f"| `{name}` | {prompts.get(name, '')} | {default} | {choices} |")
    return "\n".join(lines)


def render_readme(readme: str, table: str) -> str:
    start, end = readme.index(BEGIN) + len(BEGIN), readme.index(END)
    return f"{readme[:start]}\n{table}\n{readme[end:]}"


def main() -> int:
    config = json.loads((ROOT / "cookiecutter.json").read_text())
    readme_path = ROOT / "README.md"
    readme = readme_path.read_text()
    rendered = render_readme(readme, options_table(config))
    if "--check" in sys.argv:
        if rendered != readme:
            print("README.md options table is out of date: run python scripts/options_table.py")
            return 1
        return 0
    readme_path.write_text(rendered)
    return 0


if __name__ == "__main__":
    sys.exit(main())
