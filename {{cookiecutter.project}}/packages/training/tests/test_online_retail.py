"""The UCI Online Retail file through the reader and the example mapping (slow, opt-in)."""

import os
import time
from pathlib import Path

import pytest
import yaml

from {{ cookiecutter.package }}_core.contract import validate_events
from {{ cookiecutter.package }}_training.ingest import read_raw_table

EXAMPLE = Path(__file__).resolve().parents[3] / "examples" / "online_retail.params.yaml"


@pytest.mark.slow
def test_online_retail_through_the_example_mapping() -> None:
    location = os.environ.get("ONLINE_RETAIL_CSV")
    if not location or not Path(location).is_file():
        pytest.skip("set ONLINE_RETAIL_CSV to the UCI online_retail.csv.gz to run this test")
    params = yaml.safe_load(EXAMPLE.read_text())

    started = time.perf_counter()
    raw = read_raw_table(Path(location))
    events, report = validate_events(raw, params["data"], params["data"]["source"])
    elapsed = time.perf_counter() - started

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
    assert elapsed < 15, f"reading and validating took {elapsed:.1f} s"
