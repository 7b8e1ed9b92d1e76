"""Similar items."""


def test_similar_items_in_order(client):
    response = client.get("/v1/items/a/similar")
    assert response.status_code == 200
    body = response.get_json()
    assert body["item_id"] == "a"
    assert body["model_version"] == response.headers["X-Model-Version"]
    assert [(i["item_id"], i["score"]) for i in body["items"]] == [("c", 0.9), ("b", 0.3)]


def test_similar_items_respects_k(client):
    body = client.get("/v1/items/d/similar?k=1").get_json()
    assert [i["item_id"] for i in body["items"]] == ["b"]


def test_unknown_item_is_a_json_404(client):
    response = client.get("/v1/items/nope/similar")
    assert response.status_code == 404
    assert response.is_json
    assert response.get_json()["error"] == {
        "status": 404,
        "message": "item 'nope' is not in the model's catalogue",
    }
