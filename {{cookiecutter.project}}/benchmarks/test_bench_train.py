"""`bench_train` end to end at tiny sizes: its tables, a row per model with its times, memory and
accuracy, or why it failed; where it finds the Online Retail file."""

from __future__ import annotations

import csv
import gzip
import os
import random
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

BENCHMARKS = Path(__file__).resolve().parent
PARAMS = BENCHMARKS.parent / "params.yaml"
sys.path.insert(0, str(BENCHMARKS))
import bench_train  # noqa: E402  (a script next to this file, not a package)
import harness  # noqa: E402

CANDIDATES = yaml.safe_load(PARAMS.read_text())["model"]["candidates"]
# The model the tests make fail (an unknown parameter): its row must say so, the others stay.
FAILING = "ease"


def rows_of(output: str, title: str) -> dict[str, list[str]]:
    """The rows of the table under `title`, by model: each row's cells after data and model."""
    table = output.split(title, 1)[1].split("\n\n", 1)[0]
    rows = {}
    for line in table.splitlines()[3:]:
        cells = line.split()
        model = next(cell for cell in cells if cell in CANDIDATES)
        rows[model] = line.split(f" {model} ", 1)[1].split()
    return rows


def assert_measured(row: list[str]) -> None:
    _users, _items, _pairs, _fit_s, train_s, _eval_s, peak_mb, ndcg, recall = row
    assert float(train_s) > 0 and int(peak_mb) > 0, row
    assert 0 <= float(ndcg) <= 1 and 0 <= float(recall) <= 1, row


@pytest.mark.slow
def test_bench_train_measures_each_candidate_and_reports_one_that_fails(bench, tmp_path):
    params = yaml.safe_load(PARAMS.read_text())
    params["synthetic"]["n_items"] = 1000  # the sizes table's catalogue: the same data set
    params["model"][FAILING] = {**(params["model"].get(FAILING) or {}), "no_such_param": 1}
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    flags = "--tables sizes,catalogues --sizes 20000 --catalogues 1000 --events 20000"
    result = bench("bench_train", "--params", str(tmp_path / "params.yaml"), *flags.split())
    for title in ("Data size: synthetic events, 1,000 items", "Catalogue size: synthetic cat"):
        rows = rows_of(result.stdout, title)
        assert sorted(rows) == sorted(CANDIDATES), result.stdout
        for model, row in rows.items():
            if model == FAILING:
                # Every measurement a dash, then why.
                assert row[:9] == ["-"] * 9, row
                assert " ".join(row[9:]).startswith("failed (ValueError: Invalid parameter"), row
            else:
                assert_measured(row)
    assert "UCI Online Retail" not in result.stdout
    assert "machine: " in result.stdout and "limited (RLIMIT_AS) to" in result.stdout
    # 20,000 events over 1,000 items is one data set: prepared and measured once.
    assert result.stderr.count("prepared in") == 1, result.stderr


def write_online_retail(path: Path, customers: int = 60, items: int = 40) -> None:
    """A tiny file in the UCI Online Retail layout, June to December 2011 (cutoff: October)."""
    draw = random.Random(7)
    columns = ["InvoiceNo", "StockCode", "Description", "Quantity", "InvoiceDate"]
    columns += ["UnitPrice", "CustomerID", "Country"]
    with gzip.open(path, "wt", newline="") as file:
        writer = csv.writer(file)
        writer.writerow(columns)
        for invoice in range(1500):
            month, day = draw.randint(6, 11), draw.randint(1, 28)
            when = f"2011-{month:02d}-{day:02d}T{draw.randint(8, 18):02d}:00:00"
            customer = 12000 + draw.randint(0, customers - 1)
            for item in draw.sample(range(items), 3):
                quantity = draw.randint(1, 6)
                line = [536000 + invoice, f"8{item:04d}", "A THING", quantity, when, "1.25"]
                writer.writerow([*line, customer, "United Kingdom"])


@pytest.mark.slow
def test_bench_train_finds_the_online_retail_file_in_the_variable(tmp_path):
    write_online_retail(tmp_path / "retail.csv.gz")
    params = yaml.safe_load(PARAMS.read_text())
    params["model"]["candidates"] = ["popularity"]
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    result = run_bench(
        "--params", str(tmp_path / "params.yaml"), "--tables", "online-retail",
        ONLINE_RETAIL_CSV=str(tmp_path / "retail.csv.gz"),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"UCI Online Retail ({tmp_path / 'retail.csv.gz'})" in result.stdout
    rows = rows_of(result.stdout, "UCI Online Retail")
    assert list(rows) == ["popularity"], result.stdout
    assert_measured(rows["popularity"])


def run_bench(*flags: str, **environment: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(BENCHMARKS / "bench_train.py"), *flags],
        cwd=BENCHMARKS.parent,
        env={**os.environ, **environment},
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_a_given_online_retail_path_that_does_not_exist_is_an_error(tmp_path):
    missing = tmp_path / "nowhere.csv.gz"
    result = run_bench("--online-retail", str(missing))
    assert result.returncode != 0
    assert f"--online-retail {missing}: no such file" in result.stderr
    result = run_bench(ONLINE_RETAIL_CSV=str(missing))
    assert result.returncode != 0
    assert f"$ONLINE_RETAIL_CSV={missing}: no such file" in result.stderr


def test_help_names_every_place_the_online_retail_file_is_looked_for():
    text = " ".join(run_bench("--help").stdout.split())
    assert "--online-retail PATH, else $ONLINE_RETAIL_CSV" in text
    assert "../shared/data/online_retail.csv.gz relative to the project root" in text


def failed(returncode: int, stderr: str = "") -> str:
    error = harness.FreshProcessFailed("bench_train.py", returncode, stderr)
    return bench_train.failure_note(error)


@pytest.mark.parametrize(
    ("returncode", "stderr", "note"),
    [
        (
            1,
            "Traceback ...\nshop.models.ModelTooLarge: cannot fit: needs ~80 GiB, 20 GiB free\n",
            "cannot fit (needs ~80 GiB, 20 GiB free)",
        ),
        (
            1,
            "Traceback ...\nnumpy._core._exceptions._ArrayMemoryError: Unable to allocate 18.6 GiB",
            "cannot fit (_ArrayMemoryError: Unable to allocate 18.6 GiB)",
        ),
        (1, "Traceback ...\nMemoryError\n", "cannot fit (MemoryError)"),
        (-signal.SIGKILL, "", "cannot fit (killed by SIGKILL: out of memory?)"),
        (-signal.SIGSEGV, "", "failed (killed by SIGSEGV)"),
        (1, "Traceback ...\nValueError: l2 must be > 0\n", "failed (ValueError: l2 must be > 0)"),
        (3, "", "failed (exit status 3)"),
    ],
)
def test_a_failed_model_says_whether_it_ran_out_of_memory(returncode, stderr, note):
    assert failed(returncode, stderr) == note
