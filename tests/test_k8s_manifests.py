"""The Kubernetes manifests of the default bake: every overlay and component combination builds
with `kubectl kustomize`, validates against the oldest and newest supported Kubernetes (and the
vendored CRD schemas), passes checkov and the Pod Security Standards "restricted" profile, and
`make model-pin` edits one line or refuses bad input.

checkov and kubernetes-validate run once per module over every rendering (they are slow).
"""

from __future__ import annotations

import copy
import difflib
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import jsonschema
import pytest
import yaml
from conftest import TEMPLATE_ROOT, bake, kubectl_without_a_cluster, run, tool

pytestmark = pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl not installed")

# The oldest and newest Kubernetes the manifests support (k8s/README.md says the same): 1.30
# brings the preStop sleep action and has podFailurePolicy, backoffLimitPerIndex and CronJob
# time zones enabled by default.
KUBERNETES_VERSIONS = ("1.30.0", "1.37.0")
SCHEMAS = Path(__file__).parent / "k8s_schemas"
PROMETHEUS_OPERATOR = "prometheus-operator/v0.93.0"
CRD_SCHEMAS = {
    ("gateway.networking.k8s.io/v1", "HTTPRoute"): "gateway-api/v1.6.1/httproute_v1.json",
    ("monitoring.coreos.com/v1", "ServiceMonitor"): f"{PROMETHEUS_OPERATOR}/servicemonitor_v1.json",
    ("monitoring.coreos.com/v1", "PrometheusRule"): f"{PROMETHEUS_OPERATOR}/prometheusrule_v1.json",
    ("flagger.app/v1beta1", "Canary"): "flagger/v1.44.0/canary_v1beta1.json",
    ("flagger.app/v1beta1", "MetricTemplate"): "flagger/v1.44.0/metrictemplate_v1beta1.json",
}  # fmt: skip
BUILT_IN_GROUPS = {
    "v1", "apps/v1", "batch/v1", "autoscaling/v2", "policy/v1", "networking.k8s.io/v1",
    "rbac.authorization.k8s.io/v1",
}  # fmt: skip
# checkov is not in requirements-dev.txt: it pins packaging<24, which pytest 9 refuses. uv runs
# it from its own environment (made once, then cached).
CHECKOV_PIN = next(
    line
    for line in (TEMPLATE_ROOT / "requirements-checkov.txt").read_text().splitlines()
    if line.startswith("checkov==")
)

# Component sets beyond the overlays, on top of the base (an overlay-like kustomization each).
# `canary` and `flagger` exclude each other (both own api-canary); `canary` needs the HTTPRoute
# that `ingress` removes; `external-mlflow` replaces `mlflow-server` and `postgres`.
VARIANTS = {
    "external-mlflow": ["external-mlflow", "monitoring"],
    "ingress": ["mlflow-server", "postgres", "ingress", "loadtest"],
    "flagger": ["mlflow-server", "postgres", "monitoring", "flagger"],
    "canary-loadtest": ["mlflow-server", "postgres", "monitoring", "canary", "loadtest"],
    "mlflow-server-only": ["mlflow-server"],
    "external-mlflow-canary": ["external-mlflow", "canary", "loadtest"],
}
OVERLAYS = ("dev", "staging", "prod")
RENDERINGS = (*OVERLAYS, *VARIANTS)

POD_TEMPLATE_PATHS = {
    "Deployment": ("spec", "template"),
    "StatefulSet": ("spec", "template"),
    "Job": ("spec", "template"),
    "CronJob": ("spec", "jobTemplate", "spec", "template"),
}
# Pod Security Standards, restricted profile
# (kubernetes.io/docs/concepts/security/pod-security-standards).
PSS_VOLUME_TYPES = {
    "configMap", "csi", "downwardAPI", "emptyDir", "ephemeral", "persistentVolumeClaim",
    "projected", "secret",
}  # fmt: skip
PSS_SECCOMP = {"RuntimeDefault", "Localhost"}
# The commands of the conventions (notes: exactly these), by workload.
JOB_COMMANDS = {
    "retrain": ["shop-recommender-train", "retrain", "--trigger", "schedule"],
    "drift": ["shop-recommender-monitor", "monitor"],
    "batch-export": ["shop-recommender-batch", "export"],
}


# --- Fixtures: one bake, every rendering -------------------------------------------------------


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory, cookiecutter_config: Path) -> Path:
    return bake(tmp_path_factory.mktemp("k8s-bake"), cookiecutter_config)


def kustomize(folder: Path) -> str:
    args = ["kubectl", "kustomize", "--load-restrictor", "LoadRestrictionsNone", str(folder)]
    return run(args, cwd=folder).stdout


def write_variant(k8s: Path, name: str, components: list[str]) -> Path:
    folder = k8s / "test-variants" / name
    folder.mkdir(parents=True, exist_ok=True)
    kustomization = {
        "apiVersion": "kustomize.config.k8s.io/v1beta1",
        "kind": "Kustomization",
        "namespace": "shop-recommender",
        "labels": [{"pairs": {"app.kubernetes.io/part-of": "shop-recommender"}}],
        "resources": ["../../base"],
        "components": [f"../../components/{component}" for component in components],
        "images": [
            {"name": f"shop-recommender-{image}", "newTag": "0.1.0"} for image in ("api", "jobs")
        ],
    }
    (folder / "kustomization.yaml").write_text(yaml.safe_dump(kustomization))
    return folder


@pytest.fixture(scope="module")
def rendered(project: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Every rendering as a file (the CLIs read files), by name. The variants are built from a
    copy of k8s/, so the bake stays as generated."""
    out = tmp_path_factory.mktemp("k8s-rendered")
    k8s = out / "project" / "k8s"
    shutil.copytree(project / "k8s", k8s)
    shutil.copytree(project / "monitoring", out / "project" / "monitoring")
    folders = {name: project / "k8s" / "overlays" / name for name in OVERLAYS}
    folders |= {name: write_variant(k8s, name, parts) for name, parts in VARIANTS.items()}
    files = {}
    for name, folder in folders.items():
        files[name] = out / f"{name}.yaml"
        files[name].write_text(kustomize(folder))
    return files


def documents(path: Path) -> list[dict]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


@pytest.fixture(scope="module")
def docs(rendered: dict[str, Path]) -> dict[str, list[dict]]:
    return {name: documents(path) for name, path in rendered.items()}


def find(objects: list[dict], kind: str, name: str) -> dict:
    matches = [o for o in objects if o["kind"] == kind and o["metadata"]["name"] == name]
    assert len(matches) == 1, f"{kind}/{name}: {len(matches)} found"
    return matches[0]


def dig(mapping: dict, *keys: str):
    for key in keys:
        mapping = mapping[key]
    return mapping


def pod_templates(objects: list[dict]) -> list[tuple[str, dict]]:
    """(`Kind/name`, pod spec) of every workload."""
    found = []
    for obj in objects:
        if obj["kind"] in POD_TEMPLATE_PATHS:
            template = dig(obj, *POD_TEMPLATE_PATHS[obj["kind"]])
            found.append((f"{obj['kind']}/{obj['metadata']['name']}", template["spec"]))
    return found


def containers(spec: dict) -> list[dict]:
    return [*spec.get("initContainers", []), *spec.get("containers", [])]


# --- Building ----------------------------------------------------------------------------------


@pytest.mark.parametrize("name", RENDERINGS)
def test_rendering_builds_into_the_project_namespace(docs, name):
    objects = docs[name]
    namespace = find(objects, "Namespace", "shop-recommender")
    assert namespace["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"
    stray = [
        f"{o['kind']}/{o['metadata']['name']}"
        for o in objects
        if o["kind"] != "Namespace" and o["metadata"].get("namespace") != "shop-recommender"
    ]
    assert stray == []
    # Secrets are created by hand (k8s/README.md), never rendered from git.
    assert [o for o in objects if o["kind"] == "Secret"] == []
    assert not [o["kind"] for o in objects if o["kind"].startswith("Cluster")]


def test_make_k8s_render_prints_the_overlay(project, rendered):
    printed = run(["make", "--no-print-directory", "-s", "k8s-render", "ENV=dev"], cwd=project)
    assert printed.stdout == rendered["dev"].read_text()


def test_readme_names_the_tested_kubernetes_versions(project):
    readme = (project / "k8s/README.md").read_text()
    oldest, newest = (version.rsplit(".", 1)[0] for version in KUBERNETES_VERSIONS)
    assert f"Kubernetes **{oldest} to {newest}**" in readme


def test_kustomizations_use_current_fields_only(project):
    deprecated = {"commonLabels", "patchesStrategicMerge", "patchesJson6902", "bases", "vars"}
    found = {}
    for path in (project / "k8s").rglob("kustomization.yaml"):
        used = deprecated & set(yaml.safe_load(path.read_text()))
        if used:
            found[str(path.relative_to(project))] = sorted(used)
    assert found == {}


# --- Schemas -----------------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
def test_kubernetes_validate_strict(rendered, version):
    args = [tool("kubernetes-validate"), "--strict", "--quiet", "--no-warn", "-k", version]
    run([*args, *map(str, rendered.values())], cwd=TEMPLATE_ROOT)


def strict(schema: dict) -> dict:
    """A CRD schema that also refuses unknown fields (as `kubectl apply` does for typos, in
    strict field validation): objects with listed properties get additionalProperties false."""
    schema = copy.deepcopy(schema)

    def walk(node):
        if isinstance(node, dict):
            if (
                "properties" in node
                and "additionalProperties" not in node
                and not node.get("x-kubernetes-preserve-unknown-fields")
            ):
                node["additionalProperties"] = False
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(schema)
    # metadata is the apiserver's business (the CRD schema says only `type: object`).
    schema["properties"]["metadata"] = {"type": "object"}
    return schema


def crd_validator(api_version: str, kind: str) -> jsonschema.Draft7Validator:
    schema = json.loads((SCHEMAS / CRD_SCHEMAS[(api_version, kind)]).read_text())
    return jsonschema.Draft7Validator(strict(schema))


@pytest.mark.parametrize("name", RENDERINGS)
def test_custom_resources_match_the_vendored_crd_schemas(docs, name):
    errors, seen = [], set()
    for obj in docs[name]:
        key = (obj["apiVersion"], obj["kind"])
        if obj["apiVersion"] in BUILT_IN_GROUPS:
            continue
        assert key in CRD_SCHEMAS, f"no vendored schema for {key}"
        seen.add(key)
        for error in crd_validator(*key).iter_errors(obj):
            path = "/".join(map(str, error.absolute_path))
            errors.append(f"{obj['kind']}/{obj['metadata']['name']} {path}: {error.message}")
    assert errors == []
    assert ("gateway.networking.k8s.io/v1", "HTTPRoute") in seen or name in ("ingress", "flagger")


def test_crd_validation_catches_a_misspelt_field(docs):
    route = copy.deepcopy(find(docs["prod"], "HTTPRoute", "api"))
    route["spec"]["rules"][0]["backendRef"] = route["spec"]["rules"][0].pop("backendRefs")
    assert list(crd_validator("gateway.networking.k8s.io/v1", "HTTPRoute").iter_errors(route))


def test_every_vendored_schema_comes_with_its_licence_and_source():
    for relative in CRD_SCHEMAS.values():
        folder = (SCHEMAS / relative).parent
        assert "Apache License" in (folder / "LICENSE").read_text()
        assert Path(relative).name in (folder / "SOURCE.md").read_text()


# --- checkov -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def checkov(rendered, project) -> list[dict]:
    """One checkov run over every rendering (and the Dockerfiles, when the bake has them)."""
    uv = tool("uv")
    dockerfiles = sorted((project / "docker").glob("*.Dockerfile"))
    frameworks = ["kubernetes", *(["dockerfile"] if dockerfiles else [])]
    files = [*rendered.values(), *dockerfiles]
    args = [uv, "tool", "run", "--from", CHECKOV_PIN, "checkov", "--framework", *frameworks]
    args += [arg for path in files for arg in ("-f", str(path))]
    env = {**os.environ, "CKV_SKIP_PACKAGE_UPDATE_CHECK": "true", "UV_NATIVE_TLS": "1"}
    result = run([*args, "--skip-download", "--compact", "-o", "json"], cwd=project, env=env,
                 check=False)  # fmt: skip
    if result.returncode not in (0, 1):
        pytest.fail(f"checkov exited {result.returncode}\n{result.stderr[-3000:]}")
    reports = json.loads(result.stdout)
    return reports if isinstance(reports, list) else [reports]


@pytest.mark.slow
def test_checkov_finds_nothing(checkov, project):
    failed = [
        f"{check['check_id']} {check['resource']} ({Path(check['file_path']).name})"
        for report in checkov
        for check in report["results"]["failed_checks"]
    ]
    assert failed == []
    frameworks = {report["check_type"] for report in checkov}
    assert "kubernetes" in frameworks
    if list((project / "docker").glob("*.Dockerfile")):
        assert "dockerfile" in frameworks


@pytest.mark.slow
def test_every_checkov_skip_is_an_annotation_with_a_reason(checkov):
    skips = {
        (check["check_id"], check["check_result"].get("suppress_comment", ""))
        for report in checkov
        for check in report["results"]["skipped_checks"]
    }
    assert skips, "expected the documented skips (image digests, pull policy, postgres UID)"
    assert all(
        re.fullmatch(r"CKV2?_[A-Z0-9]+_\d+", check) and len(why) > 20 for check, why in skips
    )
    assert {check for check, _ in skips} <= {
        "CKV_K8S_15",
        "CKV_K8S_40",
        "CKV_K8S_43",
        "CKV_DOCKER_2",
        "CKV_DOCKER_7",
    }


# --- Pod Security Standards "restricted", field by field ---------------------------------------


def restricted_violations(where: str, spec: dict) -> list[str]:
    found = []
    for field in ("hostNetwork", "hostPID", "hostIPC"):
        if spec.get(field):
            found.append(f"{where}: {field}")
    for volume in spec.get("volumes", []):
        types = set(volume) - {"name"}
        if not types <= PSS_VOLUME_TYPES:
            found.append(f"{where}: volume {volume['name']} is {sorted(types)}")
    pod = spec.get("securityContext", {})
    if pod.get("runAsUser") == 0:
        found.append(f"{where}: pod runAsUser 0")
    if pod.get("sysctls"):
        found.append(f"{where}: sysctls")
    for container in containers(spec) + spec.get("ephemeralContainers", []):
        name = f"{where} container {container['name']}"
        context = container.get("securityContext", {})
        if context.get("runAsNonRoot", pod.get("runAsNonRoot")) is not True:
            found.append(f"{name}: runAsNonRoot not true")
        if context.get("runAsUser", pod.get("runAsUser")) == 0:
            found.append(f"{name}: runAsUser 0")
        if context.get("allowPrivilegeEscalation") is not False:
            found.append(f"{name}: allowPrivilegeEscalation not false")
        if context.get("privileged"):
            found.append(f"{name}: privileged")
        if context.get("procMount", "Default") != "Default":
            found.append(f"{name}: procMount")
        capabilities = context.get("capabilities", {})
        if "ALL" not in capabilities.get("drop", []):
            found.append(f"{name}: capabilities do not drop ALL")
        if set(capabilities.get("add", [])) - {"NET_BIND_SERVICE"}:
            found.append(f"{name}: capabilities add {capabilities['add']}")
        seccomp = context.get("seccompProfile", pod.get("seccompProfile", {})).get("type")
        if seccomp not in PSS_SECCOMP:
            found.append(f"{name}: seccompProfile {seccomp}")
        if any(port.get("hostPort") for port in container.get("ports", [])):
            found.append(f"{name}: hostPort")
    return found


@pytest.mark.parametrize("name", RENDERINGS)
def test_every_pod_meets_pod_security_restricted(docs, name):
    templates = pod_templates(docs[name])
    assert templates
    found = [v for where, spec in templates for v in restricted_violations(where, spec)]
    assert found == []


def test_the_restricted_check_catches_each_violation(docs):
    _, spec = pod_templates([find(docs["dev"], "Deployment", "api")])[0]
    assert restricted_violations("api", spec) == []
    breaches = {
        "hostNetwork": lambda s: s.update(hostNetwork=True),
        "volume": lambda s: s["volumes"].append({"name": "h", "hostPath": {"path": "/"}}),
        "runAsNonRoot": lambda s: s["containers"][0]["securityContext"].update(runAsNonRoot=False),
        "allowPrivilegeEscalation": lambda s: s["containers"][0]["securityContext"].pop(
            "allowPrivilegeEscalation"
        ),
        "capabilities": lambda s: s["containers"][0]["securityContext"]["capabilities"].update(
            add=["SYS_ADMIN"]
        ),
        "seccompProfile": lambda s: s["containers"][0]["securityContext"].update(
            seccompProfile={"type": "Unconfined"}
        ),
        "hostPort": lambda s: s["containers"][0]["ports"][0].update(hostPort=8000),
    }
    for what, breach in breaches.items():
        broken = copy.deepcopy(spec)
        breach(broken)
        assert any(what in v for v in restricted_violations("api", broken)), what


@pytest.mark.parametrize("name", RENDERINGS)
def test_every_container_is_hardened_and_sized(docs, name):
    """Beyond PSS: a read-only root filesystem, requests and limits, no token, no env secrets."""
    found = []
    for where, spec in pod_templates(docs[name]):
        if spec.get("automountServiceAccountToken") is not False:
            found.append(f"{where}: mounts a service account token")
        for container in containers(spec):
            label = f"{where} {container['name']}"
            if container["securityContext"].get("readOnlyRootFilesystem") is not True:
                found.append(f"{label}: writable root filesystem")
            resources = container.get("resources", {})
            for kind in ("requests", "limits"):
                if set(resources.get(kind, {})) != {"cpu", "memory"}:
                    found.append(f"{label}: {kind} {resources.get(kind)}")
            if any("secretKeyRef" in env.get("valueFrom", {}) for env in container.get("env", [])):
                found.append(f"{label}: a secret as an env value")
    assert found == []


# --- What the workloads run --------------------------------------------------------------------


def container_env(container: dict, objects: list[dict]) -> dict[str, str]:
    """The env a container gets: its ConfigMaps (in order, last wins), then `env`."""
    values = {}
    for source in container.get("envFrom", []):
        values |= find(objects, "ConfigMap", source["configMapRef"]["name"])["data"]
    values |= {env["name"]: env.get("value", "<ref>") for env in container.get("env", [])}
    return values


def shared_setting_names(project: Path) -> set[str]:
    shared = project / "packages/core/src/shop_recommender_core/shared.py"
    return set(re.findall(r'Setting\(\s*"([A-Z_]+)"', shared.read_text()))


API_ONLY_SETTINGS = {
    "MODEL_REFRESH_SECONDS", "ADMIN_TOKEN_FILE", "WEB_CONCURRENCY", "GUNICORN_THREADS",
    "GUNICORN_TIMEOUT", "GUNICORN_GRACEFUL_TIMEOUT", "GUNICORN_READ_TIMEOUT", "HOST", "PORT",
}  # fmt: skip


@pytest.mark.parametrize("name", OVERLAYS)
def test_api_deployment_follows_the_conventions(docs, project, name):
    objects = docs[name]
    spec = find(objects, "Deployment", "api")["spec"]["template"]["spec"]
    api = spec["containers"][0]
    assert api["command"] == ["shop-recommender-api", "serve"]
    assert api["ports"] == [{"name": "http", "containerPort": 8000}]
    assert api["startupProbe"]["httpGet"]["path"] == "/readyz"
    assert api["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert api["livenessProbe"]["httpGet"]["path"] == "/healthz"
    env = container_env(api, objects)
    assert env["EVENTS_LOG"] == "/var/lib/feedback/$(POD_NAME).jsonl"
    assert env["HOST"] == "0.0.0.0"
    assert env["MODEL_URI"].startswith("models:/shop-recommender/")
    names = set(env) - {"POD_NAME"}
    assert names <= shared_setting_names(project) | API_ONLY_SETTINGS
    # The pod outlives its preStop sleep plus gunicorn's graceful shutdown.
    pre_stop = api["lifecycle"]["preStop"]["sleep"]["seconds"]
    graceful = int(env["GUNICORN_GRACEFUL_TIMEOUT"])
    assert spec["terminationGracePeriodSeconds"] > pre_stop + graceful
    assert {v["mountPath"] for v in api["volumeMounts"]} >= {
        "/tmp", "/var/lib/feedback", "/home/app/.mlflow", "/etc/api/admin"
    }  # fmt: skip
    assert api["securityContext"]["readOnlyRootFilesystem"] is True
    assert spec["securityContext"]["runAsUser"] == 10001
    assert find(objects, "ServiceAccount", "api")["automountServiceAccountToken"] is False


@pytest.mark.parametrize("name", OVERLAYS)
def test_jobs_run_the_commands_of_the_conventions(docs, name):
    objects = docs[name]
    for cron_name, command in JOB_COMMANDS.items():
        cron = find(objects, "CronJob", cron_name)
        assert cron["spec"]["concurrencyPolicy"] == "Forbid"
        assert {"successfulJobsHistoryLimit", "failedJobsHistoryLimit"} <= set(cron["spec"])
        job = cron["spec"]["jobTemplate"]["spec"]
        assert job["activeDeadlineSeconds"] > 0
        assert "backoffLimit" in job or "backoffLimitPerIndex" in job
        rule = job["podFailurePolicy"]["rules"][0]
        assert rule["action"] == "FailJob"
        assert rule["onExitCodes"] == {
            "containerName": cron_name,
            "operator": "In",
            "values": [2, 3],
        }
        pod = job["template"]["spec"]
        main = next(c for c in pod["containers"] if c["name"] == cron_name)
        assert main["command"] == command
        assert main["image"].split("@")[0].split(":")[0].endswith("shop-recommender-jobs")
        assert main["workingDir"] == "/workspace"
        mounts = {v["mountPath"] for v in main["volumeMounts"]}
        assert {"/workspace", "/home/app/.mlflow"} <= mounts
        # The DVC project gets into the workspace first.
        assert pod["initContainers"][0]["command"][-1] == "cp -R /app/project/. /workspace/"
    drift = find(objects, "CronJob", "drift")["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    drift_env = container_env(drift["containers"][0], objects)
    assert drift_env["EVENTS_LOG"] == "/var/lib/feedback"
    # The API exports the drift job's verdict: it reads the folder the job writes.
    reports = drift_env["DRIFT_REPORT_DIR"]
    api = find(objects, "Deployment", "api")["spec"]["template"]["spec"]["containers"][0]
    assert container_env(api, objects)["DRIFT_REPORT_DIR"] == reports
    writes = {m["mountPath"]: m["name"] for m in drift["containers"][0]["volumeMounts"]}
    reads = {m["mountPath"]: m["name"] for m in api["volumeMounts"]}
    assert reports in writes and reads.get(reports) == writes[reports]


def test_batch_export_is_an_indexed_job_with_one_shard_per_index(docs):
    job = find(docs["prod"], "CronJob", "batch-export")["spec"]["jobTemplate"]["spec"]
    assert job["completionMode"] == "Indexed"
    assert job["backoffLimitPerIndex"] >= 1
    assert 1 <= job["parallelism"] <= job["completions"]
    args = job["template"]["spec"]["containers"][0]["args"]
    assert args[:2] == ["--shard", f"$(JOB_COMPLETION_INDEX)/{job['completions']}"]
    assert args[2] == "--out"


def test_loadtest_job_runs_locust_against_the_service_with_the_slo(docs):
    job = find(docs["staging"], "Job", "loadtest")["spec"]
    command = job["template"]["spec"]["containers"][0]["command"]
    assert command[:4] == ["locust", "-f", "loadtest/locustfile.py", "--headless"]
    assert command[command.index("-H") + 1] == "http://api:8000"
    assert command[command.index("--slo") + 1] == "loadtest/slo.yaml"
    assert job["podFailurePolicy"]["rules"][0]["onExitCodes"]["values"] == [2, 3]


def test_mlflow_server_reads_its_secrets_from_files(docs):
    objects = docs["dev"]
    mlflow = find(objects, "Deployment", "mlflow")["spec"]["template"]["spec"]["containers"][0]
    script = mlflow["command"][-1]
    assert "exec mlflow server --app-name basic-auth" in script
    assert '--backend-store-uri "$(cat /etc/mlflow/secret/backend-store-uri)"' in script
    assert "--serve-artifacts --artifacts-destination /var/lib/mlflow/artifacts" in script
    env = {e["name"]: e["value"] for e in mlflow["env"]}
    assert env["MLFLOW_AUTH_CONFIG_PATH"] == "/etc/mlflow/secret/basic_auth.ini"
    postgres = find(objects, "StatefulSet", "postgres")["spec"]["template"]["spec"]
    image = postgres["containers"][0]["image"]
    assert re.fullmatch(r"postgres:\d+\.\d+", image), image  # official and pinned
    # The separate auth database and the settings' tracking URI.
    init = next(o for o in objects if o["metadata"]["name"].startswith("postgres-init"))
    assert "CREATE DATABASE mlflow_auth" in next(iter(init["data"].values()))
    assert container_env(find(objects, "Deployment", "api")["spec"]["template"]["spec"][
        "containers"][0], objects)["MLFLOW_TRACKING_URI"] == "http://mlflow:5000"  # fmt: skip


def test_external_mlflow_changes_only_the_tracking_uri(docs):
    objects = docs["external-mlflow"]
    assert not [o for o in objects if o["metadata"]["name"] in ("mlflow", "postgres")]
    api = find(objects, "Deployment", "api")["spec"]["template"]["spec"]["containers"][0]
    assert container_env(api, objects)["MLFLOW_TRACKING_URI"].startswith("https://")


def test_network_policies_deny_by_default(docs):
    policies = {o["metadata"]["name"]: o for o in docs["prod"] if o["kind"] == "NetworkPolicy"}
    deny = policies["default-deny"]["spec"]
    assert deny == {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]}
    assert {"allow-dns-egress", "api-from-gateway", "api-from-prometheus", "to-mlflow"} <= set(
        policies
    )
    assert {"mlflow-from-clients", "postgres-from-mlflow"} <= set(policies)


def test_overlays_pin_images_and_models(docs):
    for name in OVERLAYS:
        api = find(docs[name], "Deployment", "api")["spec"]["template"]["spec"]["containers"][0]
        if name == "prod":
            assert re.fullmatch(r".+/shop-recommender-api@sha256:[0-9a-f]{64}", api["image"])
        else:
            assert api["image"] == "shop-recommender-api:0.1.0"
    route = find(docs["prod"], "HTTPRoute", "api")["spec"]["rules"][0]["backendRefs"]
    assert [(ref["name"], ref["port"]) for ref in route] == [("api", 8000), ("api-canary", 8000)]
    canary = find(docs["prod"], "Deployment", "api-canary")
    assert canary["spec"]["replicas"] == 1
    assert find(docs["dev"], "Deployment", "api-canary")["spec"]["replicas"] == 0
    # The HPA owns the API's replica count; each overlay sizes it.
    sizes = {}
    for name in OVERLAYS:
        assert "replicas" not in find(docs[name], "Deployment", "api")["spec"]
        hpa = find(docs[name], "HorizontalPodAutoscaler", "api")["spec"]
        sizes[name] = (hpa["minReplicas"], hpa["maxReplicas"])
    assert sizes["dev"] < sizes["staging"] < sizes["prod"]


def test_flagger_replaces_the_static_canary_and_route(docs):
    objects = docs["flagger"]
    kinds = {(o["kind"], o["metadata"]["name"]) for o in objects}
    assert ("Canary", "api") in kinds and ("MetricTemplate", "error-rate") in kinds
    assert not kinds & {("HTTPRoute", "api"), ("Service", "api"), ("Deployment", "api-canary")}
    for template in (o for o in objects if o["kind"] == "MetricTemplate"):
        assert re.search(
            r"http_request(s_total|_duration_seconds_bucket)\{", template["spec"]["query"]
        )


def test_ingress_replaces_the_http_route(docs):
    kinds = {o["kind"] for o in docs["ingress"]}
    assert "Ingress" in kinds and "HTTPRoute" not in kinds


# --- Monitoring: generated from monitoring/, never a hand copy ---------------------------------


def test_prometheus_rule_is_the_alerts_file(project, docs):
    run([sys.executable, "k8s/manifests.py", "prometheus-rule", "--check"], cwd=project)
    rule = find(docs["prod"], "PrometheusRule", "api-alerts")
    alerts = yaml.safe_load((project / "monitoring/prometheus/alerts.yml").read_text())
    assert rule["spec"] == alerts


def test_a_stale_prometheus_rule_is_reported(project, tmp_path):
    copy_root = tmp_path / "project"
    shutil.copytree(project / "k8s", copy_root / "k8s")
    shutil.copytree(project / "monitoring", copy_root / "monitoring")
    alerts = copy_root / "monitoring/prometheus/alerts.yml"
    alerts.write_text(alerts.read_text() + "\n# a change\n")
    check = [sys.executable, "k8s/manifests.py", "prometheus-rule", "--check"]
    assert run(check, cwd=copy_root, check=False).returncode == 3
    run([sys.executable, "k8s/manifests.py", "prometheus-rule"], cwd=copy_root)
    assert run(check, cwd=copy_root, check=False).returncode == 0


def test_grafana_dashboard_configmap_is_the_dashboard_file(project, docs):
    configmap = find(docs["staging"], "ConfigMap", "grafana-dashboard")
    assert configmap["metadata"]["labels"]["grafana_dashboard"] == "1"
    dashboard = (project / "monitoring/grafana/dashboard.json").read_text()
    assert configmap["data"] == {"dashboard.json": dashboard}


# --- make model-pin ----------------------------------------------------------------------------


@pytest.fixture
def pin_project(project: Path, tmp_path: Path) -> Path:
    """A copy of the bake's Makefile and k8s/ to edit."""
    shutil.copytree(project / "k8s", tmp_path / "k8s")
    shutil.copytree(project / "monitoring", tmp_path / "monitoring")
    shutil.copy(project / "Makefile", tmp_path / "Makefile")
    return tmp_path


def pin(folder: Path, *args: str) -> subprocess.CompletedProcess:
    return run([sys.executable, "k8s/manifests.py", "model-pin", *args], cwd=folder, check=False)


def changed_lines(before: str, after: str) -> list[str]:
    diff = difflib.unified_diff(before.splitlines(), after.splitlines(), lineterm="", n=0)
    return [line for line in diff if line[:1] in "+-" and line[:3] not in ("+++", "---")]


@pytest.mark.parametrize(
    ("env", "extra", "generator"),
    [("dev", [], "settings"), ("prod", [], "settings"), ("prod", ["CANARY=1"], "canary-settings")],
)
def test_model_pin_changes_one_line(pin_project, env, extra, generator):
    overlay = pin_project / "k8s/overlays" / env / "kustomization.yaml"
    before = overlay.read_text()
    result = run(["make", "--no-print-directory", "model-pin", f"ENV={env}", "VERSION=42", *extra],
                 cwd=pin_project)  # fmt: skip
    assert "models:/shop-recommender/42" in result.stdout
    assert changed_lines(before, overlay.read_text()) == [
        "-      - MODEL_URI=models:/shop-recommender/1",
        "+      - MODEL_URI=models:/shop-recommender/42",
    ]
    rendered = documents_from(kustomize(overlay.parent))
    configmap = next(o for o in rendered if o["metadata"]["name"].startswith(f"{generator}-"))
    assert configmap["data"]["MODEL_URI"] == "models:/shop-recommender/42"


def documents_from(text: str) -> list[dict]:
    return [doc for doc in yaml.safe_load_all(text) if doc]


def test_model_pin_to_the_pinned_version_changes_nothing(pin_project):
    overlay = pin_project / "k8s/overlays/staging/kustomization.yaml"
    before = overlay.stat().st_mtime_ns
    result = pin(pin_project, "--env", "staging", "--version", "1")
    assert result.returncode == 0 and "already" in result.stdout
    assert overlay.stat().st_mtime_ns == before


@pytest.mark.parametrize(
    "args",
    [
        ["--env", "prod", "--version", "x"],
        ["--env", "prod", "--version", "0"],
        ["--env", "prod", "--version", "07"],
        ["--env", "prod", "--version", "-1"],
        ["--env", "prod", "--version", "3 "],
        ["--env", "prod", "--version", "champion"],
        ["--env", "prod", "--version", ""],
        ["--env", "nope", "--version", "3"],
        ["--env", "../base", "--version", "3"],
        ["--env", "", "--version", "3"],
        ["--env", "dev", "--version", "3", "--canary"],  # dev runs no canary
        ["--env", "prod"],
    ],
)
def test_model_pin_refuses_bad_input_and_changes_nothing(pin_project, args):
    k8s = pin_project / "k8s"
    before = {path: path.read_bytes() for path in k8s.rglob("*") if path.is_file()}
    result = pin(pin_project, *args)
    assert result.returncode == 2, result.stdout + result.stderr
    assert "error" in result.stderr
    after = {path: path.read_bytes() for path in k8s.rglob("*") if path.is_file()}
    assert after == before


def test_make_model_pin_reads_its_arguments_from_the_command_line_only(pin_project):
    # A shell's ENV (sh reads it) or a CI's VERSION must not pick an overlay or a version.
    env = {**os.environ, "ENV": "prod", "VERSION": "3"}
    overlay = pin_project / "k8s/overlays/prod/kustomization.yaml"
    before = overlay.read_bytes()
    for args in (["VERSION=3"], ["ENV=prod"]):
        result = subprocess.run(
            ["make", "--no-print-directory", "model-pin", *args],
            cwd=pin_project, env=env, capture_output=True, text=True,
        )  # fmt: skip
        assert result.returncode == 2, result.stdout
        assert "give ENV=" in result.stderr or "VERSION must be" in result.stderr
    assert overlay.read_bytes() == before


# --- image-pin and make deploy -----------------------------------------------------------------

DIGEST = "sha256:" + "ab" * 32
API_REF = f"ghcr.io/acme/shop-recommender-api@{DIGEST}"
JOBS_REF = f"ghcr.io/acme/shop-recommender-jobs@{'sha256:' + 'cd' * 32}"


def image_of(objects: list[dict], kind: str, name: str) -> str:
    return containers(pod_templates([find(objects, kind, name)])[0][1])[0]["image"]


@pytest.mark.parametrize("env", OVERLAYS)
def test_image_pin_points_the_overlay_at_the_pushed_digests(pin_project, env):
    overlay = pin_project / "k8s/overlays" / env / "kustomization.yaml"
    before = overlay.read_text()
    result = run([sys.executable, "k8s/manifests.py", "image-pin", "--env", env,
                  f"--image=shop-recommender-api={API_REF}",
                  f"--image=shop-recommender-jobs={JOBS_REF}"], cwd=pin_project)  # fmt: skip
    assert API_REF in result.stdout
    rendered = documents_from(kustomize(overlay.parent))
    assert image_of(rendered, "Deployment", "api") == API_REF
    assert image_of(rendered, "CronJob", "retrain") == JOBS_REF
    # Only the two entries' fields changed: comments and everything else stay.
    lines = changed_lines(before, overlay.read_text())
    changed = {line[1:].split(":")[0].strip() for line in lines}
    assert changed <= {"newName", "newTag", "digest"}


@pytest.mark.parametrize(
    "image",
    [
        "shop-recommender-api=ghcr.io/acme/shop-recommender-api:1.0",  # a tag moves: not a digest
        "shop-recommender-api=ghcr.io/acme/api@sha256:abc",
        "shop-recommender-api=",
        "nope=" + API_REF,
    ],
)
def test_image_pin_refuses_bad_references_and_changes_nothing(pin_project, image):
    k8s = pin_project / "k8s"
    before = {path: path.read_bytes() for path in k8s.rglob("*") if path.is_file()}
    # The good pin first: a bad one after it must still leave the file as it was.
    result = run([sys.executable, "k8s/manifests.py", "image-pin", "--env", "staging",
                  f"--image=shop-recommender-jobs={JOBS_REF}", f"--image={image}"],
                 cwd=pin_project, check=False)  # fmt: skip
    assert result.returncode == 2, result.stdout + result.stderr
    assert "ERROR" in result.stderr or "error" in result.stderr
    assert {path: path.read_bytes() for path in k8s.rglob("*") if path.is_file()} == before


@pytest.fixture
def fake_kubectl(pin_project: Path, project: Path, tmp_path_factory) -> tuple[Path, dict]:
    shutil.copytree(project / "delivery", pin_project / "delivery")
    fake = kubectl_without_a_cluster(tmp_path_factory.mktemp("bin"), pin_project)
    return pin_project, {**os.environ, **fake}


def deploy(folder: Path, env: dict, *args: str) -> subprocess.CompletedProcess:
    command = [sys.executable, "delivery/delivery.py", "deploy", "--with", "kubernetes", *args]
    return run(command, cwd=folder, env=env, check=False)


def test_deploy_applies_the_overlay_with_the_pushed_images_and_model(fake_kubectl):
    folder, env = fake_kubectl
    (folder / "dist").mkdir()
    (folder / "dist/images.env").write_text(f"API_IMAGE={API_REF}\nJOBS_IMAGE={JOBS_REF}\n")
    result = deploy(folder, env, "--env", "staging", "--model-version", "7")
    assert result.returncode == 0, result.stdout + result.stderr
    applied = documents_from((folder / "applied.yaml").read_text())
    assert image_of(applied, "Deployment", "api") == API_REF
    assert image_of(applied, "CronJob", "drift") == JOBS_REF
    settings = next(o for o in applied if o["metadata"]["name"].startswith("settings-"))
    assert settings["data"]["MODEL_URI"] == "models:/shop-recommender/7"
    calls = (folder / "kubectl.log").read_text().splitlines()
    assert calls[-1] == "-n shop-recommender rollout status deployment/api --timeout=10m"


def test_a_failed_apply_fails_the_deploy_and_waits_for_nothing(fake_kubectl):
    folder, env = fake_kubectl
    result = deploy(folder, {**env, "APPLY_EXIT": "1"}, "--env", "dev")
    assert result.returncode != 0
    assert "rollout" not in (folder / "kubectl.log").read_text()


def test_deploy_with_a_tag_instead_of_a_digest_changes_and_applies_nothing(fake_kubectl):
    folder, env = fake_kubectl
    overlay = folder / "k8s/overlays/prod/kustomization.yaml"
    before = overlay.read_bytes()
    result = deploy(folder, env, "--env", "prod", "--api-image", "ghcr.io/acme/api:latest")
    assert result.returncode == 2 and "sha256" in result.stderr
    assert overlay.read_bytes() == before and not (folder / "applied.yaml").exists()
