"""tests/doc_commands.py, which runs the documentation's shell commands: blocks run in page
order in one session, only ```bash blocks run, and a failing block fails naming itself."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from doc_commands import DocCommandFailed, bash_blocks, run_page

PAGE = """# A page

```bash
cd sub
export GREETING=hello
```

```console
$ this is output, not a command
exit 9
```

- a list item with a block:

    ```bash
    echo "$GREETING from $(basename "$PWD")" > ../said.txt
    ```

```text
false
```
"""


def test_only_bash_blocks_are_commands_in_page_order():
    blocks = bash_blocks(PAGE)
    assert [b.number for b in blocks] == [1, 2]
    assert blocks[0].text == "cd sub\nexport GREETING=hello\n"
    assert blocks[1].text.startswith('echo "$GREETING')  # dedented out of the list item
    assert blocks[0].line == 3


def test_blocks_run_in_order_in_one_session(tmp_path):
    (tmp_path / "sub").mkdir()
    page = tmp_path / "page.md"
    page.write_text(PAGE)
    run_page(page, cwd=tmp_path)
    assert (tmp_path / "said.txt").read_text() == "hello from sub\n"


def test_a_failing_block_fails_with_its_text_and_output(tmp_path):
    page = tmp_path / "page.md"
    page.write_text(
        "```bash\necho first\n```\n\n```bash\necho before the failure\nls no-such-file\n"
        "echo never\n```\n\n```bash\ntouch ran-after\n```\n"
    )
    with pytest.raises(DocCommandFailed) as failure:
        run_page(page, cwd=tmp_path)
    message = str(failure.value)
    assert "block 2 (line 5)" in message and "ls no-such-file" in message
    assert "before the failure" in message and "never\n" not in message.split("---")[-1]
    assert not (tmp_path / "ran-after").exists()


def test_a_failure_inside_a_pipeline_fails_the_block(tmp_path):
    page = tmp_path / "page.md"
    page.write_text("```bash\nfalse | cat\n```\n")
    with pytest.raises(DocCommandFailed, match="block 1"):
        run_page(page, cwd=tmp_path)


def test_a_background_job_is_stopped_by_kill_and_by_a_failure(tmp_path):
    """`cmd &` then `kill %1` stops the job and its children, as in a terminal; a page that
    fails leaves nothing running either."""
    page = tmp_path / "page.md"
    page.write_text(
        "```bash\n(sleep 300; touch late) &\nsleep 0.2\nkill %1\nwait %1 || true\n```\n"
        "```bash\n(sleep 2; touch leaked) &\nfalse\n```\n"
    )
    with pytest.raises(DocCommandFailed, match="block 2"):
        run_page(page, cwd=tmp_path)
    time.sleep(3)
    assert not (tmp_path / "leaked").exists()


def test_a_page_without_commands_is_an_error(tmp_path):
    page = tmp_path / "page.md"
    page.write_text("# Nothing to run\n\n```text\nls\n```\n")
    with pytest.raises(DocCommandFailed, match="no ```bash block"):
        run_page(page, cwd=tmp_path)


def test_a_hung_block_times_out(tmp_path):
    page = tmp_path / "page.md"
    page.write_text("```bash\nsleep 30\n```\n")
    with pytest.raises(DocCommandFailed, match="timed out after 1 s"):
        run_page(page, cwd=tmp_path, timeout=1)


def test_the_docs_pages_have_commands():
    docs = Path(__file__).resolve().parents[1] / "docs"
    for page in ["getting-started.md", *(f"workshop/lab-{n}.md" for n in range(1, 7))]:
        assert bash_blocks((docs / page).read_text()), page


def test_ports_the_page_names_are_moved_and_other_numbers_kept(tmp_path):
    page = tmp_path / "page.md"
    page.write_text("```bash\necho http://127.0.0.1:8000/x --port 5000 EVENTS=400000 18000\n```\n")
    output = run_page(page, cwd=tmp_path, ports={8000: 41234, 5000: 41235})
    assert "http://127.0.0.1:41234/x --port 41235 EVENTS=400000 18000" in output
