"""Each benchmark runs as a script and documents every flag, with its default."""

from __future__ import annotations

import re

import pytest

FLAGS = {
    "bench_train": "--params --tables --sizes --catalogues --events --online-retail --memory-limit",
    "bench_serve": "--params --events --workers --threads --clients --seconds --rounds",
    "bench_batch": "--params --sizes --k --chunk-size",
    "bench_drift": "--params --sizes",
    "bench_images": "--params --base-image --debootstrap --events --rounds --workdir",
}


@pytest.mark.parametrize("name", sorted(FLAGS))
def test_help_shows_each_flag_with_its_default(bench, name):
    text = bench(name, "--help", timeout=120).stdout
    assert f"benchmarks/{name}.py" in text
    # One entry per option: "  --sizes SIZES   what it is (default: ...)", perhaps wrapped.
    entries = re.split(r"\n  (?=-)", text.split("\noptions:\n", 1)[1])
    documented = {entry.split()[0]: entry for entry in entries if entry.startswith("--")}
    assert sorted(documented) == sorted(FLAGS[name].split())
    for flag, entry in documented.items():
        assert "(default:" in entry, flag
