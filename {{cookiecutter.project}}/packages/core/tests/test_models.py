"""Recommenders: the scikit-learn contract, each model's maths, and ranking sanity."""

import numpy as np
import pytest
from scipy.sparse import csr_matrix
from scipy.sparse import random as sparse_random
from sklearn.base import clone
from sklearn.exceptions import NotFittedError

from {{ cookiecutter.package }}_core import models
from {{ cookiecutter.package }}_core.metrics import ranking_report
from {{ cookiecutter.package }}_core.models import (
    MODELS,
    ALSRecommender,
    EASERecommender,
    ItemKNNRecommender,
    ModelTooLarge,
    PopularityRecommender,
    RP3betaRecommender,
    build_model,
)
from {{ cookiecutter.package }}_core.ranking import top_k

ALL_MODELS = [
    PopularityRecommender(),
    ItemKNNRecommender(n_neighbors=5, shrink=2.0),
    RP3betaRecommender(alpha=0.8, beta=0.4, n_neighbors=10),
    ALSRecommender(factors=8, iterations=5),
    EASERecommender(l2=10.0),
]


@pytest.fixture(scope="module")
def interactions():
    matrix = sparse_random(120, 40, density=0.15, format="csr", dtype=np.float32, rng=7)
    matrix.data = np.ceil(matrix.data * 5)  # weights 1..5 like event weights
    return matrix


@pytest.mark.parametrize("model", ALL_MODELS, ids=lambda m: type(m).__name__)
def test_clone_round_trip_keeps_parameters_and_drops_fitted_state(model, interactions):
    fitted = clone(model).fit(interactions)
    copy = clone(fitted)
    assert type(copy) is type(model)
    assert copy.get_params() == model.get_params()
    assert not hasattr(copy, "n_items_")
    np.testing.assert_allclose(
        copy.fit(interactions).predict_scores(interactions[:5]),
        fitted.predict_scores(interactions[:5]),
        rtol=1e-6,
    )


def test_parameters_are_stored_unchanged():
    assert ItemKNNRecommender(n_neighbors=7, shrink=1.5).get_params() == {
        "n_neighbors": 7,
        "shrink": 1.5,
    }
    assert EASERecommender().get_params() == {"l2": 50.0}
    assert PopularityRecommender().get_params() == {}
    assert EASERecommender().set_params(l2=3.0).l2 == 3.0


def test_build_model_from_registry():
    model = build_model("ease", {"l2": 42.0})
    assert isinstance(model, EASERecommender) and model.l2 == 42.0
    assert isinstance(build_model("popularity", {}), PopularityRecommender)
    assert set(MODELS) == {"popularity", "itemknn", "rp3beta", "als", "ease"}


def test_build_model_rejects_unknown_names_and_parameters():
    with pytest.raises(ValueError, match="unknown model 'svd'; known models: als, ease, itemknn"):
        build_model("svd", {})
    with pytest.raises(ValueError, match="Invalid parameter 'alpha'"):
        build_model("ease", {"alpha": 1.0})


def test_ease_matches_the_closed_form():
    # A 0/1 matrix: the mean squared weight is 1, so the relative l2 is the absolute one.
    X = np.array(
        [[1, 1, 0, 0], [1, 0, 1, 0], [0, 1, 1, 1], [1, 1, 1, 0], [0, 0, 1, 1]], dtype=np.float64
    )
    l2 = 2.0
    P = np.linalg.inv(X.T @ X + l2 * np.eye(4))
    B = -P / np.diag(P)
    np.fill_diagonal(B, 0.0)
    model = EASERecommender(l2=l2).fit(csr_matrix(X))
    np.testing.assert_allclose(model.item_weights_, B, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(model.predict_scores(csr_matrix(X[:2])), X[:2] @ B, rtol=1e-5)
    assert model.predict_scores(csr_matrix(X)).dtype == np.float32


def test_ease_l2_is_relative_to_the_weights_scale(interactions):
    # Weights x5 (a purchase weight) would need l2 x25 if l2 were absolute; relative, the
    # same l2 learns the same item weights from a 0/1 matrix and from a weighted one.
    binary = interactions.copy()
    binary.data[:] = 1.0
    one = EASERecommender(l2=20.0).fit(binary).item_weights_
    five = EASERecommender(l2=20.0).fit(binary * 5.0).item_weights_
    np.testing.assert_allclose(five, one, rtol=1e-4, atol=1e-6)
    # On a weighted matrix lambda = l2 * mean(x^2), in closed form.
    X = interactions.toarray().astype(np.float64)
    lam = 20.0 * np.mean(interactions.data.astype(np.float64) ** 2)
    P = np.linalg.inv(X.T @ X + lam * np.eye(X.shape[1]))
    B = -P / np.diag(P)
    np.fill_diagonal(B, 0.0)
    weighted = EASERecommender(l2=20.0).fit(interactions).item_weights_
    np.testing.assert_allclose(weighted, B, rtol=1e-4, atol=1e-6)


def test_ease_refuses_a_catalogue_that_cannot_fit_before_allocating(monkeypatch):
    monkeypatch.setattr(models, "available_memory", lambda: 2**30)
    # 20,000 items need ~9 GiB: refused up front (a dense allocation would fail or swap).
    X = csr_matrix((np.ones(3, np.float32), ([0, 1, 2], [0, 5, 19_999])), shape=(3, 20_000))
    with pytest.raises(ModelTooLarge, match=r"EASE cannot fit: needs ~8.9 GiB, 1.0 GiB available"):
        EASERecommender().fit(X)


def test_available_memory_honours_the_address_space_limit():
    import resource

    soft, _ = resource.getrlimit(resource.RLIMIT_AS)
    assert 0 < models.available_memory() <= (soft if soft != resource.RLIM_INFINITY else 2**62)


def test_rp3beta_is_the_three_step_walk_divided_by_popularity():
    X = np.array([[1, 2, 0, 0], [1, 0, 1, 0], [0, 1, 1, 1], [3, 1, 1, 0]], dtype=np.float64)
    alpha, beta = 0.7, 0.4
    user_to_item = (X / X.sum(axis=1, keepdims=True)) ** alpha
    item_to_user = (X.T / X.T.sum(axis=1, keepdims=True)) ** alpha
    degree = (X > 0).sum(axis=0)
    walk = (item_to_user @ user_to_item) / degree**beta
    np.fill_diagonal(walk, 0.0)
    model = RP3betaRecommender(alpha=alpha, beta=beta, n_neighbors=10).fit(csr_matrix(X))
    np.testing.assert_allclose(model.walk_.toarray(), walk, rtol=1e-5)
    np.testing.assert_allclose(model.predict_scores(csr_matrix(X)), X @ walk, rtol=1e-5)


def test_rp3beta_keeps_at_most_n_neighbors_per_item(interactions):
    walk = RP3betaRecommender(n_neighbors=3).fit(interactions).walk_
    assert np.diff(walk.indptr).max() <= 3
    assert walk.diagonal().sum() == 0
    full = RP3betaRecommender(n_neighbors=1000).fit(interactions).walk_.toarray()
    for item in range(0, 40, 7):
        kept = walk[item].toarray().ravel()
        assert kept[kept > 0].min() >= np.sort(full[item])[-3] - 1e-6


def test_als_scores_are_user_factors_times_item_factors(interactions):
    model = ALSRecommender(factors=6, iterations=8, random_state=3).fit(interactions)
    factors = model.als_.recalculate_user(np.arange(5), interactions[:5])
    np.testing.assert_allclose(
        model.predict_scores(interactions[:5]), factors @ model.als_.item_factors.T, rtol=1e-5
    )
    # A user's own items score higher than the rest on average: the factors learned something.
    scores, seen = model.predict_scores(interactions), interactions.toarray() > 0
    assert scores[seen].mean() > scores[~seen].mean()
    # Similar items are the nearest item factors by cosine.
    unit = model.als_.item_factors / np.linalg.norm(model.als_.item_factors, axis=1)[:, None]
    indices, _ = model.similar_items(np.array([4]), k=1)
    cosine = unit @ unit[4]
    cosine[4] = -np.inf
    assert indices[0, 0] == int(np.argmax(cosine))


def test_item_knn_is_cosine_between_item_columns():
    X = np.array([[1, 1, 0], [1, 0, 1], [0, 1, 1], [1, 1, 0]], dtype=np.float64)
    model = ItemKNNRecommender(n_neighbors=10).fit(csr_matrix(X))
    norms = np.linalg.norm(X, axis=0)
    cosine = (X.T @ X) / np.outer(norms, norms)
    np.fill_diagonal(cosine, 0.0)
    np.testing.assert_allclose(model.similarity_.toarray(), cosine, rtol=1e-6)

    shrunk = ItemKNNRecommender(n_neighbors=10, shrink=3.0).fit(csr_matrix(X))
    dots = X.T @ X
    expected = dots / (np.outer(norms, norms) + 3.0)
    np.fill_diagonal(expected, 0.0)
    np.testing.assert_allclose(shrunk.similarity_.toarray(), expected, rtol=1e-6)


def test_item_knn_keeps_at_most_n_neighbors_per_item(interactions):
    model = ItemKNNRecommender(n_neighbors=3).fit(interactions)
    similarity = model.similarity_.tocsc()
    assert np.diff(similarity.indptr).max() <= 3
    assert similarity.diagonal().sum() == 0
    # The kept neighbours are the most similar ones.
    full = ItemKNNRecommender(n_neighbors=1000).fit(interactions).similarity_.toarray()
    kept = similarity.toarray()
    for item in range(0, 40, 7):
        threshold = np.sort(full[:, item])[-3]
        assert kept[:, item][kept[:, item] > 0].min() >= threshold - 1e-6


def test_popularity_counts_users_and_breaks_ties_by_weight():
    X = csr_matrix(
        np.array([[1, 5, 1, 0], [1, 0, 2, 0], [0, 0, 0, 3], [1, 0, 0, 0]], dtype=np.float32)
    )
    model = PopularityRecommender().fit(X)
    assert model.item_users_.tolist() == [3, 1, 2, 1]
    indices, _ = model.recommend(csr_matrix((1, 4), dtype=np.float32), k=4)
    # Items 1 and 3 both have one user; item 1's weight (5) beats item 3's (3).
    assert indices.tolist() == [[0, 2, 1, 3]]


@pytest.mark.parametrize("model", ALL_MODELS, ids=lambda m: type(m).__name__)
def test_recommend_never_returns_seen_items(model, interactions):
    model = clone(model).fit(interactions)
    indices, scores = model.recommend(interactions, k=30)
    assert indices.shape == scores.shape == (120, 30)
    seen = interactions.toarray() > 0
    rows = np.repeat(np.arange(120), 30)
    valid = indices.ravel() >= 0
    assert not seen[rows[valid], indices.ravel()[valid]].any()
    # Scores come out best first (padding, if any, last).
    assert (np.diff(np.where(np.isneginf(scores), -1e30, scores), axis=1) <= 0).all()


def test_recommend_can_include_seen_items():
    X = csr_matrix(np.array([[1, 0, 0], [1, 2, 0], [1, 0, 1]], dtype=np.float32))
    model = PopularityRecommender().fit(X)
    assert model.recommend(X[:1], k=1, exclude_seen=False)[0].tolist() == [[0]]
    assert model.recommend(X[:1], k=1)[0].tolist() == [[1]]


def test_recommend_in_chunks_equals_one_pass(interactions, monkeypatch):
    model = EASERecommender(l2=10.0).fit(interactions)
    expected = top_k(model.predict_scores(interactions), 7, exclude=interactions)
    monkeypatch.setattr(models, "CHUNK_ROWS", 16)
    indices, scores = model.recommend(interactions, k=7)
    np.testing.assert_array_equal(indices, expected[0])
    np.testing.assert_allclose(scores, expected[1])


@pytest.mark.parametrize("model", ALL_MODELS, ids=lambda m: type(m).__name__)
def test_similar_items_never_return_the_item_itself(model, interactions):
    model = clone(model).fit(interactions)
    items = np.arange(40)
    indices, scores = model.similar_items(items, k=10)
    assert indices.shape == scores.shape == (40, 10)
    assert not (indices == items[:, None]).any()
    if not isinstance(model, ItemKNNRecommender | RP3betaRecommender):  # sparse ones pad
        assert (indices >= 0).all()


def test_similar_items_of_popularity_are_the_most_popular_others():
    X = csr_matrix(np.array([[1, 1, 1], [1, 1, 0], [1, 0, 0]], dtype=np.float32))
    indices, _ = PopularityRecommender().fit(X).similar_items(np.array([0, 2]), k=2)
    assert indices.tolist() == [[1, 2], [0, 1]]


def test_item_knn_similar_items_pad_instead_of_inventing_neighbours():
    # Items 0 and 1 are co-interacted; item 2 is never seen with anything else.
    X = csr_matrix(np.array([[1, 1, 0], [0, 0, 1]], dtype=np.float32))
    indices, _ = ItemKNNRecommender().fit(X).similar_items(np.array([0, 2]), k=2)
    assert indices.tolist() == [[1, -1], [-1, -1]]


@pytest.mark.parametrize("k", [0, -1])
def test_non_positive_k_is_rejected(k, interactions):
    model = PopularityRecommender().fit(interactions)
    with pytest.raises(ValueError, match="k must be a positive integer"):
        model.recommend(interactions, k=k)
    with pytest.raises(ValueError, match="k must be a positive integer"):
        model.similar_items(np.array([0]), k=k)


def test_misuse_is_reported_clearly(interactions):
    with pytest.raises(NotFittedError):
        EASERecommender().recommend(interactions)
    model = EASERecommender().fit(interactions)
    with pytest.raises(ValueError, match="item columns"):
        model.predict_scores(interactions[:, :10])
    with pytest.raises(ValueError, match="item_indices must lie in"):
        model.similar_items(np.array([40]))
    with pytest.raises(ValueError, match="l2 must be > 0"):
        EASERecommender(l2=0.0).fit(interactions)
    with pytest.raises(ValueError, match="n_neighbors"):
        ItemKNNRecommender(n_neighbors=0).fit(interactions)
    with pytest.raises(ValueError, match="beta must be >= 0"):
        RP3betaRecommender(beta=-1.0).fit(interactions)
    with pytest.raises(ValueError, match="factors must be a positive integer"):
        ALSRecommender(factors=0).fit(interactions)


def planted_clusters(seed=0, n_users=600, n_items=90, n_clusters=3):
    """Users in clusters that each like their own block of items, plus a little noise.

    Returns the training matrix and the held-out matrix (two in-block items per user).
    """
    rng = np.random.default_rng(seed)
    block = n_items // n_clusters
    train = np.zeros((n_users, n_items), dtype=np.float32)
    test = np.zeros((n_users, n_items), dtype=np.float32)
    # Unequal cluster sizes so the most popular items all come from one block.
    clusters = rng.choice(n_clusters, size=n_users, p=[0.5, 0.3, 0.2])
    for user, cluster in enumerate(clusters):
        liked = rng.choice(np.arange(cluster * block, (cluster + 1) * block), 10, replace=False)
        train[user, liked[:8]] = rng.choice([1.0, 3.0, 5.0], size=8)
        test[user, liked[8:]] = 1.0
        train[user, rng.choice(n_items, 2, replace=False)] += 1.0
    test[train > 0] = 0.0
    return csr_matrix(train), csr_matrix(test)


def test_personalised_models_beat_popularity_on_planted_structure():
    train, test = planted_clusters()
    ndcg = {}
    candidates = [
        ("popularity", {}),
        ("itemknn", {"n_neighbors": 30}),
        ("rp3beta", {"n_neighbors": 30}),
        ("als", {"factors": 8}),
        ("ease", {}),
    ]
    for name, params in candidates:
        model = build_model(name, params).fit(train)
        recommended, _ = model.recommend(train, k=10)
        ndcg[name] = ranking_report(recommended, test, ks=[10], n_items=train.shape[1])[
            "ndcg_at_10"
        ]
    for name, _ in candidates[1:]:
        assert ndcg[name] > 1.5 * ndcg["popularity"], ndcg
