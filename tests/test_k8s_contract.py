"""Contract tests: what the rendered manifests declare runs in the built images and answers.

The dev overlay is rendered with `make k8s-render ENV=dev`; each workload's container command,
args, env (ConfigMaps, downward API, `$(VAR)` references), user, working directory and volume
mounts are run unchanged with `buildah run` in the image the manifest names (tests/k8s_pod.py
reads them the way the kubelet does). The cluster's pieces are stood in for on this machine:
Services are names in a mounted /etc/hosts (every pod shares the host's network here), volumes
are folders, Secrets are folders of files. In order, as a first deployment would go:
the MLflow server (basic-auth, its Secret's backend URI) answers its probe; the weekly retrain
CronJob ingests a week and registers and promotes version 1 in that server; the API Deployment
serves the version the overlay pins on the port and probe paths it declares; the drift CronJob
reads the API pod's feedback file; the Indexed batch export writes one partition from all its
shards; the locust Job meets the SLO against the API Service.
"""

from __future__ import annotations

import base64
import json
import secrets
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml
from base_image import Buildah
from image_fixtures import request, stop, wait_for
from k8s_pod import Pod, by_kind, container, pod_spec, probe_url

pytestmark = pytest.mark.slow

PROJECT = "shop-recommender"
ADMIN = ("admin", "contract-test-" + secrets.token_hex(8))
SMALL_DATA = {"n_users": 3000, "n_items": 1000, "n_events": 150_000}


def render(project: Path, *components: str) -> list[dict]:
    """`make k8s-render ENV=dev`, plus components added on top in a throwaway overlay."""
    if not components:
        out = subprocess.run(
            ["make", "--no-print-directory", "k8s-render", "ENV=dev"],
            cwd=project,
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        return [doc for doc in yaml.safe_load_all(out) if doc]
    overlay = project / "k8s" / "overlays" / "contract-test"
    overlay.mkdir(exist_ok=True)
    (overlay / "kustomization.yaml").write_text(
        yaml.safe_dump(
            {
                "apiVersion": "kustomize.config.k8s.io/v1beta1",
                "kind": "Kustomization",
                "namespace": PROJECT,  # an overlay's namespace does not reach components
                "resources": ["../dev"],
                "components": [f"../../components/{name}" for name in components],
            }
        )
    )
    try:
        out = subprocess.run(
            ["kubectl", "kustomize", "--load-restrictor", "LoadRestrictionsNone", str(overlay)],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    finally:
        (overlay / "kustomization.yaml").unlink()
        overlay.rmdir()
    return [doc for doc in yaml.safe_load_all(out) if doc]


@dataclass
class Cluster:
    """The stand-ins: a folder per PersistentVolumeClaim, Secrets as files, a hosts file."""

    root: Path
    documents: list[dict]
    secrets: dict[str, dict[str, str]]

    def __post_init__(self) -> None:
        self.configmaps = by_kind(self.documents, "ConfigMap")
        self.hosts = self.root / "hosts"
        services = " ".join(by_kind(self.documents, "Service"))
        self.hosts.write_text(f"127.0.0.1 localhost {services}\n")

    def service_url(self, name: str) -> str:
        """A Service as this machine reaches it: its first port on 127.0.0.1."""
        port = by_kind(self.documents, "Service")[name]["spec"]["ports"][0]["port"]
        return f"http://127.0.0.1:{port}"

    def workload(self, kind: str, name: str) -> dict:
        return by_kind(self.documents, kind)[name]

    def folder(self, *parts: str, mode: int = 0o777) -> Path:
        path = self.root.joinpath(*parts)
        path.mkdir(parents=True, exist_ok=True)
        path.chmod(mode)
        return path

    def volumes(self, spec: dict, pod_name: str) -> dict[str, Path]:
        """Each pod volume as a host folder: emptyDir fresh per pod, a claim shared by name,
        a Secret's keys (or its `items`) as files readable by the pod's user."""
        folders = {}
        for volume in spec.get("volumes", []):
            name = volume["name"]
            if "emptyDir" in volume:
                folders[name] = self.folder("pods", pod_name, name)
            elif "persistentVolumeClaim" in volume:
                folders[name] = self.folder("claims", volume["persistentVolumeClaim"]["claimName"])
            elif "secret" in volume:
                secret = volume["secret"]
                data = self.secrets[secret["secretName"]]
                items = secret.get("items") or [{"key": k, "path": k} for k in data]
                folder = self.folder("secrets", pod_name, name, mode=0o755)
                for item in items:
                    (folder / item["path"]).write_text(data[item["key"]])
                    (folder / item["path"]).chmod(0o644)
                folders[name] = folder
            else:
                raise NotImplementedError(f"volume {volume} is not supported")
        return folders


class Runner:
    """Runs one container of a workload in its image, as the kubelet would."""

    def __init__(self, buildah: Buildah, cluster: Cluster, images: dict[str, str]) -> None:
        self.buildah, self.cluster, self.images = buildah, cluster, images
        self.made: list[str] = []

    def command(
        self,
        workload: dict,
        name: str | None = None,
        *,
        init: bool = False,
        pod: str = "",
        annotations: dict[str, str] | None = None,
    ) -> list[str]:
        spec = pod_spec(workload)
        specs = spec.get("initContainers", []) if init else spec["containers"]
        box = specs[0] if name is None else next(c for c in specs if c["name"] == name)
        pod_name = pod or f"{workload['metadata']['name']}-contract"
        kube_pod = Pod(
            name=pod_name,
            namespace=workload["metadata"].get("namespace", "default"),
            configmaps=self.cluster.configmaps,
            volumes=self.cluster.volumes(spec, pod_name),
            annotations=annotations or {},
        )
        image = self.images[box["image"].split("@")[0].rsplit(":", 1)[0]]
        config = json.loads(self.buildah.run("inspect", "--type", "image", image).stdout)
        config = config["Docker"]["config"]
        working = self.buildah.run("from", "--pull-never", image).stdout.strip().splitlines()[-1]
        self.made.append(working)
        security = {**spec.get("securityContext", {}), **box.get("securityContext", {})}
        args = ["run", "--isolation", "chroot", "--no-hosts"]
        args += ["--user", f"{security['runAsUser']}:{security.get('runAsGroup', 0)}"]
        if "workingDir" in box:
            args += ["--workingdir", box["workingDir"]]
        for key, value in kube_pod.env(box).items():
            args += ["--env", f"{key}={value}"]
        for volume in [f"{self.cluster.hosts}:/etc/hosts:ro", *kube_pod.mounts(box)]:
            args += ["-v", volume]
        argv = kube_pod.argv(box, config.get("Entrypoint") or [], config.get("Cmd") or [])
        return self.buildah.command(*args, working, "--", *argv)

    def run(
        self, workload: dict, name: str | None = None, **options
    ) -> subprocess.CompletedProcess:
        return subprocess.run(
            self.command(workload, name, **options),
            capture_output=True,
            text=True,
            stdin=subprocess.DEVNULL,
            timeout=900,
        )

    def start(self, workload: dict, log: Path, name: str | None = None) -> subprocess.Popen:
        with open(log, "w") as out:
            return subprocess.Popen(
                self.command(workload, name),
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )

    def cleanup(self) -> None:
        for name in self.made:
            subprocess.run(self.buildah.command("rm", name), capture_output=True)


# What a client in the namespace sends: the Service's name is an allowed host of the server.
IN_CLUSTER = {"Host": "mlflow:5000"}


def admin_headers() -> dict[str, str]:
    token = base64.b64encode(f"{ADMIN[0]}:{ADMIN[1]}".encode()).decode()
    return {**IN_CLUSTER, "Authorization": f"Basic {token}"}


def probe_headers(box: dict, probe: str) -> dict[str, str]:
    return {h["name"]: h["value"] for h in box[probe]["httpGet"].get("httpHeaders", [])}


# --- the deployment, stage by stage ------------------------------------------------------------


@pytest.fixture(scope="module")
def deployment(tmp_path_factory, default_project, buildah, api_image, jobs_image):
    documents = render(default_project, "loadtest")
    credentials = f"[mlflow]\nmlflow_tracking_username = {ADMIN[0]}\n"
    credentials += f"mlflow_tracking_password = {ADMIN[1]}\n"
    auth = (
        "[mlflow]\ndefault_permission = READ\ndatabase_uri = sqlite:////tmp/basic-auth.db\n"
        f"admin_username = {ADMIN[0]}\nadmin_password = {ADMIN[1]}\n"
        "authorization_function = mlflow.server.auth:authenticate_request_basic_auth\n"
    )
    cluster = Cluster(
        tmp_path_factory.mktemp("cluster"),
        documents,
        secrets={
            "mlflow-server": {
                # The tracking database in the server's own volume; PostgreSQL in a cluster.
                "backend-store-uri": "sqlite:////var/lib/mlflow/artifacts/tracking.db",
                "basic_auth.ini": auth,
                "flask-secret-key": secrets.token_hex(16),
            },
            "mlflow-client": {"credentials": credentials},
            "api-admin-token": {"token": secrets.token_hex(16)},
        },
    )
    images = {f"{PROJECT}-api": api_image, f"{PROJECT}-jobs": jobs_image}
    runner = Runner(buildah, cluster, images)
    yield cluster, runner
    runner.cleanup()


@pytest.fixture(scope="module")
def mlflow_server(deployment) -> Iterator[str]:
    cluster, runner = deployment
    workload = cluster.workload("Deployment", "mlflow")
    box = container(workload)
    log = cluster.root / "mlflow.log"
    server = runner.start(workload, log)
    try:
        wait_for(
            probe_url(box, "readinessProbe"),
            server,
            log,
            120,
            headers=probe_headers(box, "readinessProbe"),
        )
        yield cluster.service_url("mlflow")
    finally:
        stop(server)


def test_mlflow_server_needs_a_login_except_for_its_probe(mlflow_server):
    search = f"{mlflow_server}/api/2.0/mlflow/registered-models/search"
    assert request(search, headers=IN_CLUSTER)[0] == 401
    assert request(search, headers=admin_headers())[0] == 200
    # Only the Service's own names are served (--allowed-hosts): DNS rebinding gets nothing.
    assert request(search, headers={**admin_headers(), "Host": "attacker.example"})[0] == 403


@pytest.fixture(scope="module")
def workspace(deployment) -> Path:
    """The retrain CronJob's init container fills the workspace claim; a small synthetic shop
    and its next week stand in for the team's data."""
    cluster, runner = deployment
    cronjob = cluster.workload("CronJob", "retrain")
    init = runner.run(cronjob, init=True)
    assert init.returncode == 0, init.stderr
    claim = cluster.root / "claims" / "workspace"
    params = yaml.safe_load((claim / "params.yaml").read_text())
    params["synthetic"].update(SMALL_DATA)
    (claim / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    return claim


def in_workspace(runner: Runner, cluster: Cluster, *argv: str) -> None:
    """A command of the jobs image in the workspace (data the CronJobs then find there)."""
    cronjob = cluster.workload("CronJob", "retrain")
    box = {**container(cronjob), "command": list(argv)}
    job = json.loads(json.dumps(cronjob))
    pod_spec(job)["containers"] = [box]
    result = runner.run(job)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]


def next_week(runner: Runner, cluster: Cluster, start: str) -> None:
    """A week of new events in the workspace's data/incoming, as the team's ingestion leaves it."""
    argv = ("--out", "data/incoming", "--start", start, "--days", "7", "--events", "40000")
    in_workspace(runner, cluster, f"{PROJECT}-train", "generate-data", *argv)


@pytest.fixture(scope="module")
def retrained(deployment, mlflow_server, workspace) -> subprocess.CompletedProcess:
    cluster, runner = deployment
    in_workspace(runner, cluster, f"{PROJECT}-train", "generate-data")
    next_week(runner, cluster, "2026-02-02")
    return runner.run(cluster.workload("CronJob", "retrain"))


def test_retrain_cronjob_registers_and_promotes_in_the_tracking_server(retrained, mlflow_server):
    assert retrained.returncode == 0, retrained.stdout[-3000:] + retrained.stderr[-3000:]
    url = f"{mlflow_server}/api/2.0/mlflow/registered-models/alias?name={PROJECT}&alias=champion"
    status, body = request(url, headers=admin_headers())
    assert status == 200, body
    version = json.loads(body)["model_version"]
    assert version["version"] == "1"
    tags = {tag["key"]: tag["value"] for tag in version.get("tags", [])}
    assert tags.get("trigger") == "schedule", tags


@pytest.fixture(scope="module")
def api_server(deployment, retrained) -> Iterator[tuple[dict, str]]:
    cluster, runner = deployment
    assert retrained.returncode == 0, "the retrain CronJob registered no model"
    workload = cluster.workload("Deployment", "api")
    box = container(workload, "api")
    log = cluster.root / "api.log"
    server = runner.start(workload, log, "api")
    try:
        wait_for(probe_url(box, "startupProbe"), server, log, 90)
        yield box, log
    finally:
        stop(server)


def test_api_deployment_serves_the_pinned_version_on_its_declared_probes(deployment, api_server):
    cluster, _ = deployment
    box, _ = api_server
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert request(probe_url(box, probe))[0] == 200, probe
    api = cluster.service_url("api")
    status, body = request(f"{api}/v1/users/u00042/recommendations?k=5")
    assert status == 200, body
    answer = json.loads(body)
    assert answer["model_version"] == "1" and len(answer["items"]) == 5
    status, body = request(f"{api}/metrics")
    assert status == 200 and b"recommender_model_info" in body, body[:500]
    event = {
        "event_type": "click",
        "user_id": "u00042",
        "item_id": answer["items"][0]["item_id"],
        "model_version": "1",
    }
    status, body = request(
        f"{api}/v1/events",
        data=json.dumps(event).encode(),
        headers={"Content-Type": "application/json"},
    )
    assert status == 202, body
    # One feedback file per pod, named by the pod (EVENTS_LOG=/var/lib/feedback/$(POD_NAME).jsonl).
    files = sorted(p.name for p in (cluster.root / "claims" / "feedback-events").iterdir())
    assert files == ["api-contract.jsonl"], files


def test_drift_cronjob_reads_every_pods_feedback(deployment, api_server, workspace):
    cluster, runner = deployment
    next_week(runner, cluster, "2026-02-09")
    result = runner.run(cluster.workload("CronJob", "drift"))
    output = result.stdout + result.stderr
    assert result.returncode in (0, 3), output[-4000:]
    summary = json.loads((cluster.root / "claims" / "drift-reports" / "summary.json").read_text())
    print(json.dumps(summary, indent=1)[:3000])
    assert summary["online_quality"], summary


def test_batch_export_indexed_job_fills_one_partition_from_all_shards(deployment, api_server):
    cluster, runner = deployment
    cronjob = cluster.workload("CronJob", "batch-export")
    completions = cronjob["spec"]["jobTemplate"]["spec"]["completions"]
    for index in range(completions):
        annotations = {"batch.kubernetes.io/job-completion-index": str(index)}
        result = runner.run(cronjob, pod=f"batch-export-{index}", annotations=annotations)
        assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    manifests = sorted((cluster.root / "claims" / "workspace" / "exports").rglob("manifest.json"))
    assert len(manifests) == 1, manifests
    manifest = json.loads(manifests[0].read_text())
    assert manifest["shards"]["count"] == completions, manifest
    assert len(manifest["shards"]["manifests"]) == completions, manifest


def test_loadtest_job_meets_the_slo_against_the_api_service(deployment, api_server):
    cluster, runner = deployment
    job = json.loads(json.dumps(cluster.workload("Job", "loadtest")))
    # The one change to a declared value: this test's shop is smaller than the synthetic default
    # the Job names, and a shopper asking for an item the model does not know gets a 404.
    sizes = {"LOADTEST_N_USERS": SMALL_DATA["n_users"], "LOADTEST_N_ITEMS": SMALL_DATA["n_items"]}
    env = container(job)["env"]
    assert {v["name"] for v in env} >= set(sizes), env
    for variable in env:
        if variable["name"] in sizes:
            variable["value"] = str(sizes[variable["name"]])
    result = runner.run(job)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
