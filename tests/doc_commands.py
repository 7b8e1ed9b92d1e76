"""Run the shell commands of a documentation page, so the page cannot drift from the project.

A page's ```bash blocks are its commands (```console and ```text blocks show output and are not
run). `run_page` runs every block of a page in order in ONE bash session under
`set -euo pipefail` with job control (`set -m`), as a reader pasting them into one terminal
would: a `cd` or a variable of one block holds in the next, and `kill %1` stops a server a block
started with `&`. When a command fails, the error names the page, the block (its
number and line) with its text, and the output that block printed.
"""

from __future__ import annotations

import contextlib
import os
import re
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

# A fence opening a bash block, at any indent (a block may sit in a list item or admonition).
FENCE = re.compile(r"^(?P<indent>[ \t]*)(?P<fence>```+|~~~+)[ \t]*(?P<info>[^\s`]*)[^`]*$")
MARKER = "@@doc-commands block"


@dataclass(frozen=True)
class Block:
    """One ```bash block: its number on the page (1-based), first line and commands."""

    number: int
    line: int
    text: str


class DocCommandFailed(AssertionError):
    """A block of a page failed (or the session timed out)."""


def bash_blocks(markdown: str) -> list[Block]:
    """The page's ```bash blocks in page order, each dedented by its fence's indent."""
    blocks: list[Block] = []
    lines = markdown.splitlines()
    index = 0
    while index < len(lines):
        opening = FENCE.match(lines[index])
        if not opening:
            index += 1
            continue
        indent, fence, info = opening["indent"], opening["fence"], opening["info"]
        body: list[str] = []
        index += 1
        while index < len(lines) and not (
            lines[index].strip().startswith(fence) and lines[index].strip().strip(fence[0]) == ""
        ):
            line = lines[index]
            body.append(line[len(indent) :] if line.startswith(indent) else line.lstrip())
            index += 1
        if info == "bash":
            start = index - len(body)
            blocks.append(Block(len(blocks) + 1, start, "\n".join(body) + "\n"))
        index += 1
    return blocks


def session_script(blocks: list[Block]) -> str:
    """One bash script: a marker line before each block, then the block, then a final marker."""
    parts = [
        "set -euo pipefail",
        # Job control, as in a terminal: `make serve &` runs in a process group of its own, so
        # the page's `kill %1` stops the server and everything it started.
        "set -m",
        # Whatever a failing page left running in the background goes with the session.
        "trap 'for job in $(jobs -p); do kill -TERM -- -$job 2>/dev/null || true; done' EXIT",
    ]
    for block in blocks:
        parts.append(f"printf '\\n{MARKER} %s\\n' {block.number}")
        parts.append(block.text)
    parts.append(f"printf '\\n{MARKER} done\\n'")
    return "\n".join(parts) + "\n"


def split_output(output: str) -> tuple[str | None, str]:
    """The last block that started (None: none did) and what it printed since."""
    last, rest = None, output
    for match in re.finditer(rf"^{MARKER} (\S+)$", output, flags=re.MULTILINE):
        last, rest = match[1], output[match.end() :]
    return last, rest


def moved(blocks: list[Block], ports: dict[int, int]) -> list[Block]:
    """The blocks with each port the page names (8000, 5000) replaced by a free one: the tests
    run beside others that serve on the pages' ports."""
    moved_blocks = []
    for block in blocks:
        text = block.text
        for page_port, port in ports.items():
            text = re.sub(rf"(?<!\d){page_port}(?!\d)", str(port), text)
        moved_blocks.append(Block(block.number, block.line, text))
    return moved_blocks


def run_page(
    page: Path,
    cwd: Path,
    env: dict[str, str] | None = None,
    timeout: float = 900,
    ports: dict[int, int] | None = None,
) -> str:
    """Run the page's bash blocks in one session in `cwd`; return the whole output.

    `ports` maps a port the page names to the one the session uses instead. Raises
    DocCommandFailed naming the failing block and showing its output. A page with no bash
    block is an error too: a test running it would prove nothing."""
    blocks = moved(bash_blocks(page.read_text()), ports or {})
    if not blocks:
        raise DocCommandFailed(f"{page}: no ```bash block to run")
    with tempfile.TemporaryDirectory(prefix="doc-commands-") as folder:
        script = Path(folder, "session.sh")
        script.write_text(session_script(blocks))
        log = Path(folder, "output.log")
        with log.open("w") as out:
            process = subprocess.Popen(
                ["bash", str(script)],
                cwd=cwd,
                env=env if env is not None else dict(os.environ),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
            try:
                code = process.wait(timeout=timeout)
                timed_out = False
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, 9)
                code, timed_out = process.wait(), True
            finally:
                # Whatever a block left running in the background goes with the session.
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, 9)
        output = log.read_text(errors="replace")
    last, since = split_output(output)
    if code == 0 and last == "done":
        return output
    block = next((b for b in blocks if str(b.number) == last), None)
    why = f"timed out after {timeout:.0f} s" if timed_out else f"exited {code}"
    where = (
        f"block {block.number} (line {block.line}):\n{block.text}"
        if block
        else "before its first block"
    )
    raise DocCommandFailed(
        f"{page.name}: the session {why} in {where}\n--- its output ---\n{since[-12000:]}"
    )
