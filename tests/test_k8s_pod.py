"""The contract tests' reading of a container spec follows the kubelet's rules."""

from k8s_pod import Pod, expand


def test_references_expand_like_the_kubelet():
    env = {"POD_NAME": "api-7d9", "N": "2"}
    assert expand("/var/lib/feedback/$(POD_NAME).jsonl", env) == "/var/lib/feedback/api-7d9.jsonl"
    assert expand("$$(POD_NAME) $(UNKNOWN)", env) == "$(POD_NAME) $(UNKNOWN)"


def test_env_from_configmaps_then_env_in_order():
    pod = Pod(
        name="api-0",
        namespace="shop",
        configmaps={"settings": {"data": {"LOG_LEVEL": "info", "PORT": "8000"}}},
        annotations={"batch.kubernetes.io/job-completion-index": "1"},
    )
    index = "metadata.annotations['batch.kubernetes.io/job-completion-index']"
    spec = {
        "envFrom": [{"configMapRef": {"name": "settings"}}],
        "env": [
            {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
            {"name": "JOB_COMPLETION_INDEX", "valueFrom": {"fieldRef": {"fieldPath": index}}},
            {"name": "EVENTS_LOG", "value": "/var/lib/feedback/$(POD_NAME).jsonl"},
            {"name": "LOG_LEVEL", "value": "warning"},
        ],
        "command": ["export", "--shard", "$(JOB_COMPLETION_INDEX)/2"],
    }
    env = pod.env(spec)
    assert env["EVENTS_LOG"] == "/var/lib/feedback/api-0.jsonl"
    assert env["LOG_LEVEL"] == "warning" and env["PORT"] == "8000"
    assert pod.argv(spec, ["entry"], ["cmd"]) == ["export", "--shard", "1/2"]
    assert pod.argv({"args": ["serve"]}, ["entry"], ["cmd"]) == ["entry", "serve"]
    assert pod.argv({}, ["entry"], ["cmd"]) == ["entry", "cmd"]
