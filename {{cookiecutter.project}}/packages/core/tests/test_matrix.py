"""Interaction matrix: id maps, event weights, time decay, duplicates and unknown ids."""

import numpy as np
import pandas as pd
import pytest

from {{ cookiecutter.package }}_core.matrix import IdMap, build_interaction_matrix, relevance_matrix

WEIGHTS = {"view": 1.0, "add_to_cart": 3.0, "purchase": 5.0}


def events(rows):
    frame = pd.DataFrame(rows, columns=["user_id", "item_id", "event_type", "timestamp"])
    frame["timestamp"] = pd.to_datetime(frame["timestamp"], format="ISO8601")
    return frame


def dense(result):
    return result.matrix.toarray()


def test_id_map_round_trip_and_unknown_ids():
    ids = IdMap.from_values(["b", "a", "c", "a"])
    assert ids.ids.tolist() == ["a", "b", "c"]
    assert len(ids) == 3
    assert ids.index_of(["c", "zz", "a", ""]).tolist() == [2, -1, 0, -1]
    assert ids == IdMap(["a", "b", "c"])


def test_id_map_requires_sorted_unique_ids():
    with pytest.raises(ValueError, match="sorted and unique"):
        IdMap(["b", "a"])
    with pytest.raises(ValueError, match="sorted and unique"):
        IdMap(["a", "a"])


def test_empty_id_map_knows_nothing():
    assert IdMap([]).index_of(["a"]).tolist() == [-1]


def test_weights_by_event_type_and_duplicates_are_summed():
    result = build_interaction_matrix(
        events(
            [
                ("u2", "i1", "view", "2026-01-01"),
                ("u1", "i2", "purchase", "2026-01-01"),
                ("u1", "i2", "view", "2026-01-02"),
                ("u1", "i1", "add_to_cart", "2026-01-03"),
                ("u1", "i2", "view", "2026-01-03"),
            ]
        ),
        WEIGHTS,
        half_life_days=None,
    )
    assert result.users.ids.tolist() == ["u1", "u2"]
    assert result.items.ids.tolist() == ["i1", "i2"]
    assert result.matrix.dtype == np.float32
    assert result.matrix.format == "csr"
    np.testing.assert_allclose(dense(result), [[3.0, 7.0], [1.0, 0.0]])


def test_time_decay_halves_weight_per_half_life():
    rows = [
        ("u1", "i1", "view", "2026-01-10"),
        ("u1", "i2", "purchase", "2026-01-08"),
        ("u1", "i3", "view", "2026-01-09 12:00"),
    ]
    result = build_interaction_matrix(events(rows), WEIGHTS, half_life_days=2.0)
    # Ages from the latest event: 0, 2 and 0.5 days.
    np.testing.assert_allclose(dense(result), [[1.0, 2.5, 0.5**0.25]], rtol=1e-6)

    later = build_interaction_matrix(
        events(rows), WEIGHTS, half_life_days=2.0, now=pd.Timestamp("2026-01-12")
    )
    np.testing.assert_allclose(dense(later), [[0.5, 1.25, 0.5**1.25]], rtol=1e-6)


def test_given_maps_fix_the_shape_and_drop_unknown_ids():
    users, items = IdMap(["u1", "u2", "u3"]), IdMap(["i1", "i2"])
    result = build_interaction_matrix(
        events(
            [
                ("u1", "i1", "view", "2026-01-01"),
                ("u9", "i1", "view", "2026-01-01"),
                ("u2", "i9", "purchase", "2026-01-01"),
                ("u3", "i2", "purchase", "2026-01-01"),
            ]
        ),
        WEIGHTS,
        half_life_days=None,
        user_map=users,
        item_map=items,
    )
    assert result.users is users and result.items is items
    np.testing.assert_allclose(dense(result), [[1.0, 0.0], [0.0, 0.0], [0.0, 5.0]])


def test_zero_weight_events_leave_no_entry():
    result = build_interaction_matrix(
        events([("u1", "i1", "view", "2026-01-01"), ("u1", "i2", "purchase", "2026-01-01")]),
        {"view": 0.0, "add_to_cart": 3.0, "purchase": 5.0},
        half_life_days=None,
    )
    assert result.matrix.nnz == 1
    assert result.items.ids.tolist() == ["i1", "i2"]


def test_bad_input_is_rejected():
    frame = events([("u1", "i1", "click", "2026-01-01")])
    with pytest.raises(ValueError, match="event types without a weight: \\['click'\\]"):
        build_interaction_matrix(frame, WEIGHTS, half_life_days=None)
    with pytest.raises(ValueError, match="missing columns \\['timestamp'\\]"):
        build_interaction_matrix(frame.drop(columns="timestamp"), WEIGHTS, half_life_days=None)
    with pytest.raises(ValueError, match="half_life_days"):
        build_interaction_matrix(frame, {"click": 1.0}, half_life_days=0)


def test_empty_events_give_an_empty_matrix():
    result = build_interaction_matrix(events([]), WEIGHTS, half_life_days=7.0)
    assert result.matrix.shape == (0, 0)


def test_many_events_match_a_direct_computation():
    rng = np.random.default_rng(0)
    n = 200_000
    frame = pd.DataFrame(
        {
            "user_id": pd.Series(rng.integers(0, 5000, n)).map("u{:05d}".format),
            "item_id": pd.Series(rng.integers(0, 1000, n)).map("i{:04d}".format),
            "event_type": rng.choice(["view", "add_to_cart", "purchase"], n),
            "timestamp": pd.Timestamp("2026-01-01") + pd.to_timedelta(rng.random(n) * 28, "D"),
        }
    )
    result = build_interaction_matrix(frame, WEIGHTS, half_life_days=7.0)
    assert result.matrix.shape == (5000, 1000)
    expected_total = (
        frame["event_type"].map(WEIGHTS)
        * 0.5 ** ((frame["timestamp"].max() - frame["timestamp"]).dt.total_seconds() / 86400 / 7)
    ).sum()
    assert result.matrix.sum() == pytest.approx(expected_total, rel=1e-5)
    row = result.users.index_of(["u00042"])[0]
    col = result.items.index_of(["i0007"])[0]
    pair = frame[(frame["user_id"] == "u00042") & (frame["item_id"] == "i0007")]
    assert result.matrix[row, col] == pytest.approx(
        (
            pair["event_type"].map(WEIGHTS)
            * 0.5 ** ((frame["timestamp"].max() - pair["timestamp"]).dt.total_seconds() / 86400 / 7)
        ).sum(),
        rel=1e-5,
    )


def test_relevance_matrix_is_binary():
    users, items = IdMap(["u1", "u2"]), IdMap(["i1", "i2", "i3"])
    relevant = relevance_matrix(
        events(
            [
                ("u1", "i3", "purchase", "2026-01-01"),
                ("u1", "i3", "add_to_cart", "2026-01-02"),
                ("u2", "i1", "purchase", "2026-01-01"),
                ("u2", "new-item", "purchase", "2026-01-01"),
            ]
        ),
        users,
        items,
    )
    assert relevant.format == "csr"
    np.testing.assert_array_equal(relevant.toarray(), [[0, 0, 1], [1, 0, 0]])
