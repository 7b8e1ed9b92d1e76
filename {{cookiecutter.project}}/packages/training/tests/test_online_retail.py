"""The real UCI Online Retail file through the example mapping and the whole pipeline (slow),
and the README's recipe for it pasted into a fresh copy of the project.

The real file is opt-in: set ONLINE_RETAIL_CSV to its path (those tests skip, saying so,
without it). The recipe runs on a small file in the same format, made here.
"""

import gzip
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from {{ cookiecutter.package }}_core.contract import validate_events
from {{ cookiecutter.package }}_core.raw_tables import read_raw_table
from {{ cookiecutter.package }}_training import data_stages, model_stages
from {{ cookiecutter.package }}_training.config import Paths, merge_params

PROJECT_ROOT = Path(__file__).resolve().parents[3]
EXAMPLE = PROJECT_ROOT / "examples" / "online_retail.params.yaml"
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def online_retail_csv() -> Path:
    location = os.environ.get("ONLINE_RETAIL_CSV")
    if not location or not Path(location).is_file():
        pytest.skip("set ONLINE_RETAIL_CSV to the UCI online_retail.csv.gz to run this test")
    return Path(location)


def test_online_retail_through_the_example_mapping(online_retail_csv) -> None:
    params = yaml.safe_load(EXAMPLE.read_text())
    raw = read_raw_table(online_retail_csv)
    events, report = validate_events(raw, params["data"], params["data"]["source"])

    # Measured on the 541,909-row file (the README's 4,339 customers and 3,665 items count
    # postage and fee codes, which the mapping drops as non-products).
    assert report["rows_read"] == 541_909
    dropped = report["dropped"]
    assert dropped["no customer"] == pytest.approx(135_080, abs=100)
    assert dropped["cancellation"] == pytest.approx(8_905, abs=100)
    assert dropped["non-product stock code"] == pytest.approx(1_554, abs=100)
    assert dropped["duplicate rows"] == pytest.approx(5_187, abs=100)
    assert report["users"] == pytest.approx(4_335, abs=10)
    assert report["items"] == pytest.approx(3_659, abs=10)
    assert report["events_by_type"]["purchase"] == report["rows_valid"] == len(events)
    assert report["time_range"][0].startswith("2010-12-01")
    assert report["time_range"][1].startswith("2011-12-09")


def test_online_retail_through_the_pipeline(online_retail_csv, tmp_path) -> None:
    params = merge_params(
        yaml.safe_load((PROJECT_ROOT / "params.yaml").read_text()),
        yaml.safe_load(EXAMPLE.read_text()),
    )
    paths = Paths(tmp_path)
    paths.raw.mkdir(parents=True)
    (tmp_path / params["data"]["source"]).symlink_to(online_retail_csv.resolve())
    for stage in (data_stages.ingest, data_stages.validate, data_stages.split):
        stage(params, paths)
    model_stages.train(params, paths)
    metrics = model_stages.evaluate(params, paths)["models"]

    ndcg = {name: report["warm"]["ndcg_at_10"] for name, report in metrics.items()}
    # Published anchor for popularity on this protocol: 0.044. With params.yaml's untuned
    # settings every model clears the gate's 1.25x (measured: rp3beta 0.076, itemknn 0.083,
    # EASE 0.095, ALS 0.099); after `make tune` on the weeks before the cut RP3beta reaches
    # 0.124 (README: "Tuning").
    assert ndcg["popularity"] == pytest.approx(0.044, abs=0.005)
    for name in params["model"]["candidates"]:
        if name != "popularity":
            assert ndcg[name] >= 1.25 * ndcg["popularity"], ndcg


def small_online_retail(path: Path) -> Path:
    """A gzipped CSV in the UCI file's format: 400 customers who each buy in one of 12 groups of
    25 products, before and after the example's cutoff (2011-10-01), plus a cancellation and a
    postage line for the drop rules."""
    rng = np.random.default_rng(7)
    header = "InvoiceNo,StockCode,Description,Quantity,InvoiceDate,UnitPrice,CustomerID,Country"
    lines, invoice = [header], 540000
    for customer in range(12346, 12346 + 400):
        group = customer % 12
        codes = rng.choice(25, size=12, replace=False) + 20000 + 25 * group
        for position, code in enumerate(codes):
            start = "2011-06-01" if position < 8 else "2011-10-02"
            days = rng.integers(0, 110 if position < 8 else 60)
            day = np.datetime64(start) + np.timedelta64(int(days), "D")
            invoice += 1
            when = f"{day}T{rng.integers(8, 18):02d}:{rng.integers(0, 60):02d}:00"
            lines.append(f"{invoice},{code},PRODUCT {code},2,{when},1.25,{customer},United Kingdom")
    lines.append("C540000,20001,PRODUCT 20001,-2,2011-07-01T10:00:00,1.25,12346,United Kingdom")
    lines.append("540001,POST,POSTAGE,1,2011-07-01T10:00:00,18.00,12347,France")
    path.write_bytes(gzip.compress(("\n".join(lines) + "\n").encode()))
    return path


def readme_recipe() -> str:
    """The bash block of the README that runs the pipeline on Online Retail, as a user pastes it."""
    readme = (PROJECT_ROOT / "README.md").read_text()
    section = readme[readme.index("`examples/online_retail.params.yaml` is a complete mapping") :]
    return re.search(r"```bash\n(.*?)```", section, re.S).group(1)


def test_the_readme_recipe_works_pasted_in_a_fresh_project(tmp_path) -> None:
    uv = shutil.which("uv") or PROJECT_ROOT / ".tools" / "bin" / "uv"
    if not Path(uv).is_file():
        pytest.skip("uv is neither on PATH nor in .tools/ (make setup puts it there)")
    root = tmp_path / "project"
    files = subprocess.run(
        ["git", "ls-files", "-co", "--exclude-standard"],
        cwd=PROJECT_ROOT, capture_output=True, text=True, check=True,
    ).stdout.split()  # fmt: skip
    for name in files:
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(PROJECT_ROOT / name, root / name)
    assert not (root / "data").exists()  # fresh: no data/raw yet
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@example.com"]
    subprocess.run(["git", "init", "-q"], cwd=root, check=True)
    subprocess.run(["git", "add", "-A"], cwd=root, check=True)
    subprocess.run([*git, "commit", "-qm", "fresh"], cwd=root, check=True)
    (root / ".venv").symlink_to(Path(sys.prefix))  # this project's environment, installed
    env = {key: value for key, value in os.environ.items() if not key.startswith("VIRTUAL_ENV")}
    env.pop("MLFLOW_TRACKING_URI", None)
    env |= {"UV": str(uv), "ONLINE_RETAIL_CSV": str(small_online_retail(tmp_path / "or.csv.gz"))}

    result = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", readme_recipe()],
        cwd=root, env=env, capture_output=True, text=True, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "merged data, split from examples/online_retail.params.yaml" in output
    assert "promoted version 1 to champion" in output
    params_text = (root / "params.yaml").read_text()
    assert "# Every knob of the pipeline." in params_text  # apply-params kept the comments
    assert yaml.safe_load(params_text)["data"]["source"] == "data/raw/online_retail.csv.gz"
    validation = yaml.safe_load((root / "reports" / "validation.json").read_text())
    assert validation["dropped"]["cancellation"] == 1
    assert validation["dropped"]["non-product stock code"] == 1
    assert validation["rows_valid"] == 400 * 12
