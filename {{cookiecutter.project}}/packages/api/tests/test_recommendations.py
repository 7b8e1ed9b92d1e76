"""Recommendations for a user, a session and a batch: exact answers from the tiny artifact."""

from {{ cookiecutter.package }}_api.routes.recommendations import scored_items


def items_of(body: dict) -> list[tuple[str, float]]:
    return [(item["item_id"], item["score"]) for item in body["items"]]


def test_known_user_gets_personalized_top_k(client):
    response = client.get("/v1/users/u1/recommendations")
    assert response.status_code == 200
    body = response.get_json()
    assert body["strategy"] == "personalized"
    assert body["user_id"] == "u1"
    assert items_of(body) == [("c", 0.9), ("b", 0.5), ("d", 0.1)]
    assert body["model_version"] == response.headers["X-Model-Version"]
    assert body["model_version"].startswith("local-")


def test_k_limits_the_answer(client):
    body = client.get("/v1/users/u1/recommendations?k=2").get_json()
    assert items_of(body) == [("c", 0.9), ("b", 0.5)]


def test_exclude_and_category_filter(client):
    body = client.get("/v1/users/u1/recommendations?exclude=c,x").get_json()
    assert [item for item, _ in items_of(body)] == ["b", "d"]
    body = client.get("/v1/users/u1/recommendations?category=shoes").get_json()
    assert [item for item, _ in items_of(body)] == ["c"]


def test_unknown_user_falls_back_to_popularity(client, app):
    response = client.get("/v1/users/nobody/recommendations?k=3")
    body = response.get_json()
    assert response.status_code == 200
    assert body["strategy"] == "popularity"
    # The popularity model's scores, not 0.0 for every item.
    assert items_of(body) == [("b", 1.0), ("a", 0.75), ("d", 0.5)]
    metrics = client.get("/metrics").get_data(as_text=True)
    assert 'recommender_fallbacks_total{route="/v1/users/<user_id>/recommendations"} 1.0' in metrics


def test_scores_are_rounded_and_a_non_finite_one_is_null(app):
    items = scored_items(["a", "b", "c"], [1 / 3, float("nan"), -float("inf")])
    assert app.json.dumps({"items": items}) == (
        '{"items":[{"item_id":"a","score":0.333333},'
        '{"item_id":"b","score":null},{"item_id":"c","score":null}]}'
    )


def test_padding_scores_never_reach_the_answer(client):
    body = client.get("/v1/users/u2/recommendations").get_json()
    assert items_of(body) == [("a", 0.8), ("d", 0.2)]


def post(client, body):
    return client.post("/v1/recommendations", json=body)


def test_session_sums_similar_items(client):
    """The session ranking is core's (`ServingArtifact.recommend_session`, tested there)."""
    # a -> c .9, b .3; c -> a .9, b .2: b's scores add up; the session's items are left out.
    response = post(client, {"items": ["a", "c", "zz"], "k": 5})
    assert response.status_code == 200
    body = response.get_json()
    assert body["strategy"] == "session"
    assert body["model_version"] == response.headers["X-Model-Version"]
    assert items_of(body) == [("b", 0.5)]


def test_session_respects_k(client):
    body = post(client, {"items": ["a", "b"], "k": 1}).get_json()
    assert items_of(body) == [("c", 0.9)]


def test_session_without_known_items_falls_back_to_the_user(client):
    body = post(client, {"items": ["zz"], "user_id": "u2"}).get_json()
    assert body["strategy"] == "personalized"
    assert body["user_id"] == "u2"
    assert items_of(body) == [("a", 0.8), ("d", 0.2)]


def test_session_without_known_items_or_user_falls_back_to_popularity(client):
    body = post(client, {"items": [], "k": 2}).get_json()
    assert body["strategy"] == "popularity"
    assert items_of(body) == [("b", 1.0), ("a", 0.75)]
    # One known item is enough for a session answer, which never repeats the session's items.
    body = post(client, {"items": ["zz", "b"], "k": 2, "user_id": None}).get_json()
    assert body["strategy"] == "session"
    assert items_of(body) == [("d", 0.8), ("a", 0.4)]


def test_batch_answers_each_user(client):
    response = post(client, {"user_ids": ["u1", "nobody"], "k": 2})
    assert response.status_code == 200
    body = response.get_json()
    assert body["k"] == 2
    assert body["model_version"] == response.headers["X-Model-Version"]
    assert [(r["user_id"], r["strategy"]) for r in body["results"]] == [
        ("u1", "personalized"),
        ("nobody", "popularity"),
    ]
    assert items_of(body["results"][0]) == [("c", 0.9), ("b", 0.5)]
    assert items_of(body["results"][1]) == [("b", 1.0), ("a", 0.75)]
