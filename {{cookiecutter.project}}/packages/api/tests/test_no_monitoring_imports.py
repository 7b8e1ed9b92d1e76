"""The API process never loads the drift job's stack (evidently, scikit-learn): importing them
takes seconds and hundreds of MB in every worker."""

from __future__ import annotations

import json
import subprocess
import sys

import {{ cookiecutter.package }}_api as api_package

SERVE_ONE_REQUEST = """
import importlib
import json
import sys

package, model, folder = sys.argv[1:4]
app = importlib.import_module(package).create_app(
    {
        "MODEL_URI": model,
        "MODEL_REFRESH_SECONDS": 0,
        "EVENTS_LOG": folder + "/events.jsonl",
        "DRIFT_REPORT_DIR": folder,
    }
)
status = app.test_client().get("/v1/users/u1/recommendations").status_code
app.extensions["model_store"].stop()
print(json.dumps({"status": status, "modules": sorted(sys.modules)}))
"""


def test_serving_a_request_loads_neither_evidently_nor_sklearn(artifact_dir, tmp_path):
    result = subprocess.run(
        [
            *(sys.executable, "-c", SERVE_ONE_REQUEST),
            *(api_package.__name__, str(artifact_dir), str(tmp_path)),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    answer = json.loads(result.stdout.strip().splitlines()[-1])
    assert answer["status"] == 200
    modules = set(answer["modules"])
    assert "evidently" not in modules
    assert "sklearn" not in modules
