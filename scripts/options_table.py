"""Render the README's options table from cookiecutter.json, the single source of the options.

python scripts/options_table.py          # rewrite the table in README.md and docs/options.md
python scripts/options_table.py --check  # exit 1 if either is out of date
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


def render_table(text: str, table: str) -> str:
    start, end = text.index(BEGIN) + len(BEGIN), text.index(END)
    return f"{text[:start]}\n{table}\n{text[end:]}"


def main() -> int:
    config = json.loads((ROOT / "cookiecutter.json").read_text())
    table = options_table(config)
    stale = []
    for path in (ROOT / "README.md", ROOT / "docs" / "options.md"):
        text = path.read_text()
        rendered = render_table(text, table)
        if rendered != text:
            stale.append(path.name)
            if "--check" not in sys.argv:
                path.write_text(rendered)
    if stale and "--check" in sys.argv:
        print(f"stale options table in {', '.join(stale)}: run python scripts/options_table.py")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
