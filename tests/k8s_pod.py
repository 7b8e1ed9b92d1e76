"""Run a rendered Kubernetes container spec the way the kubelet would, inside a built image.

The contract tests read `kubectl kustomize` output, take a container's command, args, env,
ports, probes and volume mounts, and run exactly that with `buildah run`. Only what those
manifests use is supported: env values with `$(VAR)` references, `configMapKeyRef`,
`fieldRef` (pod name and namespace), `envFrom` of ConfigMaps, and emptyDir, PVC, Secret and
ConfigMap volumes (given as folders by the caller).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

# `$(NAME)` is replaced by an earlier variable's value, `$$(NAME)` stays literal `$(NAME)`, and an
# unknown name is left as written: the kubelet's rules for env values, command and args.
_REFERENCE = re.compile(r"\$\$|\$\(([A-Za-z_][A-Za-z0-9_.-]*)\)")


def expand(text: str, env: Mapping[str, str]) -> str:
    def replace(match: re.Match) -> str:
        if match.group(0) == "$$":
            return "$"
        name = match.group(1)
        return env.get(name, match.group(0))

    return _REFERENCE.sub(replace, text)


def by_kind(documents: Iterable[dict], kind: str) -> dict[str, dict]:
    return {doc["metadata"]["name"]: doc for doc in documents if doc and doc["kind"] == kind}


def pod_spec(workload: dict) -> dict:
    """The pod template of a Deployment, StatefulSet, Job or CronJob."""
    spec = workload["spec"]
    if workload["kind"] == "CronJob":
        spec = spec["jobTemplate"]["spec"]
    return spec["template"]["spec"]


def container(workload: dict, name: str | None = None) -> dict:
    containers = pod_spec(workload)["containers"]
    if name is None:
        return containers[0]
    return next(c for c in containers if c["name"] == name)


@dataclass
class Pod:
    """What a pod's metadata and volumes give its containers."""

    name: str
    namespace: str
    configmaps: Mapping[str, dict]  # rendered ConfigMaps by name
    volumes: Mapping[str, Path] = field(default_factory=dict)  # pod volume name -> host folder
    extra_env: Mapping[str, str] = field(default_factory=dict)
    # e.g. the Job controller's batch.kubernetes.io/job-completion-index
    annotations: Mapping[str, str] = field(default_factory=dict)

    def field_value(self, path: str) -> str:
        values = {"metadata.name": self.name, "metadata.namespace": self.namespace}
        values.update({f"metadata.annotations['{k}']": v for k, v in self.annotations.items()})
        if path not in values:
            raise NotImplementedError(f"fieldRef {path} is not supported by the contract tests")
        return values[path]

    def env(self, spec: dict) -> dict[str, str]:
        """The container's environment: envFrom first, then env in order (later ones win)."""
        env: dict[str, str] = dict(self.extra_env)
        for source in spec.get("envFrom", []):
            ref = source.get("configMapRef")
            if ref is None:
                raise NotImplementedError(f"envFrom {source} is not supported")
            prefix = source.get("prefix", "")
            data = self.configmaps[ref["name"]].get("data", {})
            env.update({prefix + key: value for key, value in data.items()})
        for variable in spec.get("env", []):
            if "value" in variable:
                env[variable["name"]] = expand(variable["value"], env)
                continue
            source = variable["valueFrom"]
            if "fieldRef" in source:
                env[variable["name"]] = self.field_value(source["fieldRef"]["fieldPath"])
            elif "configMapKeyRef" in source:
                ref = source["configMapKeyRef"]
                env[variable["name"]] = self.configmaps[ref["name"]]["data"][ref["key"]]
            else:
                raise NotImplementedError(f"valueFrom {source} is not supported")
        return env

    def argv(self, spec: dict, image_entrypoint: list[str], image_cmd: list[str]) -> list[str]:
        """command/args as the kubelet combines them with the image's ENTRYPOINT and CMD."""
        env = self.env(spec)
        if "command" in spec:
            argv = [*spec["command"], *spec.get("args", [])]
        elif "args" in spec:
            argv = [*image_entrypoint, *spec["args"]]
        else:
            argv = [*image_entrypoint, *image_cmd]
        return [expand(part, env) for part in argv]

    def mounts(self, spec: dict) -> list[str]:
        """`buildah run -v` arguments for the container's volume mounts."""
        options = []
        for mount in spec.get("volumeMounts", []):
            source = self.volumes[mount["name"]]
            if "subPath" in mount:
                source = source / mount["subPath"]
            suffix = ":ro" if mount.get("readOnly") else ""
            options.append(f"{source}:{mount['mountPath']}{suffix}")
        return options


def probe_url(spec: dict, probe: str) -> str:
    """The http URL (on the pod's own address, 127.0.0.1 here) a probe asks."""
    get = spec[probe]["httpGet"]
    port = get["port"]
    if isinstance(port, str):  # a named port
        port = next(p["containerPort"] for p in spec["ports"] if p["name"] == port)
    return f"http://127.0.0.1:{port}{get.get('path', '/')}"
