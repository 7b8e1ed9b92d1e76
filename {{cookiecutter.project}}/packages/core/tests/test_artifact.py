"""The serving artifact: round trip, checksum and consistency checks, lookups and filters."""

import hashlib
import json
from dataclasses import replace

import numpy as np
import pytest

from {{ cookiecutter.package }}_core.artifact import ArtifactError, ServingArtifact, read_manifest


def test_one_id_lookups_agree_with_the_bulk_ones(artifact):
    users = ["u1", "u2", "u0", "u3", "", "stranger"]
    assert [artifact.user_row(user) for user in users] == artifact.user_index(users).tolist()
    items = ["a", "b", "c", "d", "0", "e", "zz"]
    assert [artifact.item_position(item) for item in items] == artifact.item_index(items).tolist()


def test_round_trip_keeps_every_array(artifact, tmp_path):
    manifest = artifact.save(tmp_path / "model")
    loaded = ServingArtifact.load(tmp_path / "model")
    names = ("user_ids", "item_ids", "user_top_items", "user_top_scores", "popular_items")
    for name in (*names, "popular_scores"):
        assert np.array_equal(getattr(loaded, name), getattr(artifact, name))
    assert loaded.metadata == {"model": "ease"}
    assert manifest["n_users"] == 2 and manifest["top_n"] == 3
    assert read_manifest(tmp_path / "model")["checksum"] == manifest["checksum"]


def test_a_memory_mapped_artifact_answers_the_same_after_giving_back_its_pages(artifact, tmp_path):
    artifact.save(tmp_path / "model")
    mapped = ServingArtifact.load(tmp_path / "model", memory_map=True)
    before = [mapped.recommend(user, k=3) for user in ("u1", "u2", "stranger")]
    mapped.release_memory()
    assert [mapped.recommend(user, k=3) for user in ("u1", "u2", "stranger")] == before
    assert before == [artifact.recommend(user, k=3) for user in ("u1", "u2", "stranger")]


def test_save_replaces_an_existing_artifact_whole(artifact, tmp_path):
    artifact.save(tmp_path / "model")
    (tmp_path / "model" / "stale.txt").write_text("old")
    artifact.save(tmp_path / "model")
    assert not (tmp_path / "model" / "stale.txt").exists()
    assert [p.name for p in tmp_path.iterdir()] == ["model"]


def test_corrupt_array_file_is_refused(artifact, tmp_path):
    artifact.save(tmp_path / "model")
    path = tmp_path / "model" / "user_top_items.npy"
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(ArtifactError, match=r"checksum mismatch for user_top_items\.npy"):
        ServingArtifact.load(tmp_path / "model")


def test_tampered_manifest_is_refused(artifact, tmp_path):
    artifact.save(tmp_path / "model")
    manifest_path = tmp_path / "model" / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    manifest["files"]["item_ids.npy"]["shape"] = [5]
    manifest_path.write_text(json.dumps(manifest))
    with pytest.raises(ArtifactError, match="manifest checksum"):
        ServingArtifact.load(tmp_path / "model")


def test_missing_folder_and_missing_file_are_named(artifact, tmp_path):
    with pytest.raises(ArtifactError, match=r"no manifest\.json"):
        ServingArtifact.load(tmp_path / "nothing")
    artifact.save(tmp_path / "model")
    (tmp_path / "model" / "popular_items.npy").unlink()
    with pytest.raises(ArtifactError, match=r"missing array file popular_items\.npy"):
        ServingArtifact.load(tmp_path / "model")


def test_inconsistent_arrays_are_refused(artifact):
    with pytest.raises(ArtifactError, match="user_top_items rows"):
        ServingArtifact(**{**_arrays(artifact), "user_ids": np.array(["u1"])})
    with pytest.raises(ArtifactError, match="outside item_ids"):
        ServingArtifact(**{**_arrays(artifact), "popular_items": np.array([7], dtype=np.int32)})
    with pytest.raises(ArtifactError, match="sorted and unique"):
        ServingArtifact(**{**_arrays(artifact), "user_ids": np.array(["u2", "u1"])})


def _arrays(artifact: ServingArtifact) -> dict:
    names = ("user_ids", "item_ids", "item_categories", "user_top_items", "user_top_scores")
    names += ("similar_items", "similar_scores", "popular_items")
    return {name: getattr(artifact, name) for name in names}


def test_known_user_gets_personalised_items_in_order(artifact):
    answer = artifact.recommend("u1", k=2)
    assert answer.items == ["c", "b"] and answer.strategy == "personalized"
    assert answer.scores == pytest.approx([0.9, 0.5])


def test_unknown_user_gets_popularity_with_its_scores(artifact):
    answer = artifact.recommend("stranger", k=3)
    assert answer.items == ["b", "a", "d"] and answer.strategy == "popularity"
    assert answer.scores == pytest.approx([1.0, 0.75, 0.5])
    filtered = artifact.recommend("stranger", k=3, exclude={"a"}, category="hats")
    assert filtered.items == ["b", "d"] and filtered.scores == pytest.approx([1.0, 0.5])


def test_an_artifact_of_format_1_loads_and_its_fallback_scores_are_zero(artifact, tmp_path):
    """Format 1 (before `popular_scores`) still loads: a champion written by the previous
    release keeps serving."""
    folder = tmp_path / "model"
    artifact.save(folder)
    manifest = json.loads((folder / "manifest.json").read_text())
    del manifest["files"]["popular_scores.npy"]
    (folder / "popular_scores.npy").unlink()
    manifest["format_version"] = 1
    manifest["checksum"] = _checksum(manifest["files"])
    (folder / "manifest.json").write_text(json.dumps(manifest))
    loaded = ServingArtifact.load(folder)
    answer = loaded.recommend("stranger", k=2)
    assert answer.items == ["b", "a"] and answer.scores == [0.0, 0.0]


def test_an_unknown_format_is_refused_with_the_formats_this_code_reads(artifact, tmp_path):
    folder = tmp_path / "model"
    artifact.save(folder)
    manifest = json.loads((folder / "manifest.json").read_text())
    manifest["format_version"] = 99
    (folder / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ArtifactError, match=r"format_version 99, this code reads formats 1, 2"):
        ServingArtifact.load(folder)
    # Format 2 requires the scores: one without them is incomplete.
    manifest["format_version"] = 2
    del manifest["files"]["popular_scores.npy"]
    manifest["checksum"] = _checksum(manifest["files"])
    (folder / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ArtifactError, match=r"missing array file popular_scores\.npy"):
        ServingArtifact.load(folder)


def _checksum(files: dict) -> str:
    return hashlib.sha256(json.dumps(files, sort_keys=True).encode()).hexdigest()


def test_exclude_and_category_filters_and_padding(artifact):
    assert artifact.recommend("u1", k=3, exclude={"c"}).items == ["b", "d"]
    assert artifact.recommend("u1", k=3, category="shoes").items == ["c"]
    assert artifact.recommend("u2", k=5).items == ["a", "d"]
    assert artifact.recommend("u2", k=5, exclude={"a", "not-an-item"}).scores == [
        pytest.approx(0.2)
    ]


def test_unavailable_items_are_dropped_for_known_and_unknown_users(artifact):
    unavailable = np.array([False, True, True, False])  # b and c are out of stock
    answer = artifact.recommend("u1", k=3, unavailable=unavailable)
    assert answer.items == ["d"] and answer.scores == [pytest.approx(0.1)]
    assert artifact.recommend("stranger", k=3, unavailable=unavailable).items == ["a", "d"]
    both = artifact.recommend("stranger", k=3, category="hats", unavailable=unavailable)
    assert both.items == ["d"]


def test_rank_row_gives_positions_and_scores(artifact):
    items, scores, strategy = artifact.rank_row(1, k=5)  # u2: a, d, then padding
    assert items.tolist() == [0, 3] and strategy == "personalized"
    assert scores.tolist() == pytest.approx([0.8, 0.2])
    items, scores, strategy = artifact.rank_row(-1, k=2)
    assert items.tolist() == [1, 0] and strategy == "popularity"
    assert scores.tolist() == pytest.approx([1.0, 0.75])


def test_top_items_for_users_mixes_known_and_unknown(artifact):
    rows = artifact.top_items_for_users(np.array(["u2", "nobody"]), k=4)
    assert rows.tolist() == [[0, 3, -1, -1], [1, 0, 3, 2]]


@pytest.fixture
def similarity(artifact, with_lookups) -> ServingArtifact:
    """`artifact` with distinct similarity scores; item d has no neighbours (all padding)."""
    return with_lookups(
        replace(
            artifact,
            similar_items=np.array([[2, 1], [3, 0], [0, 1], [-1, -1]], dtype=np.int32),
            similar_scores=np.array(
                [[0.9, 0.3], [0.8, 0.4], [0.9, 0.2], [-np.inf, -np.inf]], dtype=np.float32
            ),
        )
    )


@pytest.mark.parametrize(
    ("session", "expected"),
    [
        (["a"], [("c", 0.9), ("b", 0.3)]),
        # a -> c .9, b .3; b -> d .8, a .4: the session's own items are left out.
        (["a", "b"], [("c", 0.9), ("d", 0.8)]),
        # a -> c .9, b .3; c -> a .9, b .2: b's scores add up.
        (["a", "c"], [("b", 0.5)]),
        # Unknown ids in the session are ignored; repeated ones count once.
        (["a", "zz", "a"], [("c", 0.9), ("b", 0.3)]),
        # d has no neighbours; a's scores from c and from b add up.
        (["c", "d", "b"], [("a", 1.3)]),
    ],
)
def test_a_session_sums_its_items_neighbours(similarity, session, expected):
    answer = similarity.recommend_session(session, k=5)
    assert answer.strategy == "session"
    assert list(zip(answer.items, answer.scores, strict=True)) == [
        (item, pytest.approx(score)) for item, score in expected
    ]


def test_a_session_answer_is_cut_at_k(similarity):
    assert similarity.recommend_session(["a", "b"], k=1).items == ["c"]


def test_a_session_with_nothing_to_offer_falls_back_to_the_user_then_popularity(similarity):
    for session in ([], ["zz"], ["d"]):  # no items, unknown items, an item without neighbours
        answer = similarity.recommend_session(session, k=2, user_id="u1")
        assert (answer.strategy, answer.items) == ("personalized", ["c", "b"])
    answer = similarity.recommend_session(["c", "zz"], k=2, user_id="u1")
    assert answer.strategy == "session"
    for user_id in (None, "stranger"):
        answer = similarity.recommend_session(["zz", "b"], k=3, user_id=user_id)
        assert answer.strategy == "session"
        answer = similarity.recommend_session(["d"], k=3, user_id=user_id)
        assert (answer.strategy, answer.items) == ("popularity", ["b", "a", "c"])


def test_similar_items_in_order_without_padding(similarity):
    answer = similarity.similar("a", k=5)
    assert (answer.items, answer.strategy) == (["c", "b"], "similar")
    assert answer.scores == pytest.approx([0.9, 0.3])
    assert similarity.similar("b", k=1).items == ["d"]
    assert similarity.similar("d", k=5).items == []
    assert similarity.similar("not-an-item") is None
