"""Each benchmark runs as a script and documents every flag with its default."""

from __future__ import annotations

import pytest

FLAGS = {
    "bench_train": ["--params", "--sizes", "--online-retail"],
    "bench_batch": ["--params", "--sizes", "--k", "--chunk-size"],
}


@pytest.mark.parametrize("name", sorted(FLAGS))
def test_help_lists_each_flag_with_its_default(bench, name):
    text = bench(name, "--help", timeout=120).stdout
    assert f"benchmarks/{name}.py" in text
    for flag in FLAGS[name]:
        assert flag in text, flag
    assert text.count("(default:") >= len(FLAGS[name]), text
