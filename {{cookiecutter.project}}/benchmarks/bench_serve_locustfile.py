"""Load for bench_serve.py: top-10 for a random known user, asked the way each server expects.

Closed loop with no think time, so each server runs as fast as it can. A 200 whose body does not
hold 10 recommendations counts as a failure: a server may not win by answering badly.
"""

import os
import random
from pathlib import Path

from locust import FastHttpUser, constant, task

TARGET = os.environ["BENCH_TARGET"]
USERS = Path(os.environ["BENCH_USERS_FILE"]).read_text().split()
K = 10


class Shopper(FastHttpUser):
    wait_time = constant(0)

    @task
    def top_k(self) -> None:
        user = random.choice(USERS)
        if TARGET == "mlflow":
            body = {"dataframe_split": {"columns": ["user_id", "k"], "data": [[user, K]]}}
            request = self.client.post("/invocations", json=body, name="top-k", catch_response=True)
            field = "predictions"
        else:
            url = f"/v1/users/{user}/recommendations?k={K}"
            request = self.client.get(url, name="top-k", catch_response=True)
            field = "items"
        with request as response:
            if response.status_code == 200 and len(response.json()[field]) != K:
                response.failure(f"expected {K} recommendations")
