"""A bare Flask app that answers every user with the same fixed 10 items.

bench_serve.py runs it under the API's own gunicorn settings: no validation, model, metrics or
logging, so its throughput is the ceiling of Flask + gunicorn on the machine, the yardstick for
how much the API's own work costs. Not for production.
"""

from flask import Flask

app = Flask(__name__)
FIXED_BODY = {
    "strategy": "fixed",
    "model_version": "ceiling",
    "items": [{"item_id": f"i{rank:05d}", "score": 1.0 - rank / 10} for rank in range(10)],
}


@app.get("/v1/users/<user_id>/recommendations")
def fixed(user_id: str) -> dict:
    return {"user_id": user_id, **FIXED_BODY}


@app.get("/readyz")
def ready() -> dict:
    return {"status": "ready"}
