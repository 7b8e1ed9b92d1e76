"""The Ansible module of the default bake, without a host: ansible-lint's production profile,
every playbook's syntax check, no secret in clear, and the preflight checks that stop a play
before anything changes (a missing secret, an unknown environment). The real converge into a
Debian rootfs is tests/test_ansible_converge.py.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path

import pytest
import yaml
from ansible_host import SECRETS, secret_values
from conftest import bake, make, tool

PLAYBOOKS = ("site.yml", "preflight.yml", "tracking.yml", "serving.yml", "rollback.yml")
ROLES = ("common", "postgresql", "mlflow_server", "recsys_api", "monitoring", "retrain_timer")
ROLE_FOLDERS = ("defaults", "handlers", "meta", "tasks", "templates")
# A key holding a secret (`*_password`, `*_token`; not `*_password_encryption`, `*_token_file`).
SECRET_KEY = re.compile(r"(password|passwd|secret|secret_key|token|api_key)s?$", re.IGNORECASE)


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory, cookiecutter_config: Path) -> Path:
    return bake(tmp_path_factory.mktemp("ansible-bake"), cookiecutter_config)


def ansible(project: Path, *args: str, env: dict[str, str] | None = None):
    return subprocess.run(
        [tool(args[0]), *args[1:]],
        cwd=project / "ansible",
        env={**os.environ, "ANSIBLE_NOCOLOR": "1", **(env or {})},
        capture_output=True,
        text=True,
        # Ansible refuses a non-blocking stdin, and a Go program run earlier in this worker
        # (docker-registry, kubectl) may have left the worker's own stdin non-blocking.
        stdin=subprocess.DEVNULL,
    )


def test_every_role_has_the_standard_folders(project: Path):
    roles = project / "ansible" / "roles"
    assert sorted(p.name for p in roles.iterdir()) == sorted(ROLES)
    missing = [f"{r}/{f}" for r in ROLES for f in ROLE_FOLDERS if not (roles / r / f).is_dir()]
    assert missing == []


def test_ansible_lint_production_profile(project: Path):
    result = ansible(project, "ansible-lint", "--offline", "--profile", "production", "--nocolor")
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-3000:]


@pytest.mark.parametrize("playbook", PLAYBOOKS)
def test_playbook_syntax(project: Path, playbook: str):
    result = ansible(
        project, "ansible-playbook", "--syntax-check", "-i", "inventories/dev", playbook
    )
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("env", ("dev", "staging", "prod"))
def test_every_inventory_names_its_environment_and_every_group(project: Path, env: str):
    inventory = project / "ansible" / "inventories" / env
    hosts = yaml.safe_load((inventory / "hosts.yml").read_text())
    assert sorted(hosts["all"]["children"]) == ["monitoring", "serving", "tracking"]
    main = yaml.safe_load((inventory / "group_vars/all/main.yml").read_text())
    assert main["deploy_environment"] == env
    secrets = yaml.safe_load((inventory / "group_vars/all/secrets.yml").read_text())
    for variable, env_name in SECRETS.items():
        assert f"'{env_name}'" in secrets[variable]


def literal_secrets(root: Path) -> list[str]:
    """`key: value` lines under `root` whose key names a secret and whose value is a literal
    (not a Jinja expression, a variable name, a path or empty)."""
    found = []
    for path in sorted(root.rglob("*")):
        if not path.is_file() or path.suffix not in {".yml", ".yaml", ".j2", ".ini", ".cfg", ""}:
            continue
        for number, line in enumerate(path.read_text(errors="replace").splitlines(), 1):
            match = re.match(r"\s*-?\s*([\w.-]+)\s*[:=]\s*(.+?)\s*$", line)
            if not match or not SECRET_KEY.search(match.group(1)) or line.lstrip().startswith("#"):
                continue
            value = match.group(2).strip("\"'")
            harmless = (
                "{{" in value
                or value in {"", "{}", "[]", "null", "true", "false", "|", ">-"}
                or value.startswith(("/", "$", "%"))
                or re.fullmatch(r"[a-z_][a-z0-9_.]*", value)  # another variable, a module
            )
            if not harmless:
                found.append(f"{path.relative_to(root)}:{number}: {line.strip()}")
    return found


def test_no_secret_in_clear(project: Path, tmp_path: Path):
    ansible_dir = project / "ansible"
    assert literal_secrets(ansible_dir) == []
    # detect-secrets agrees: no high-entropy string, no known credential format (its keyword
    # plugin is the check above, which reads Jinja: it flags `'password': <a variable>`).
    scan = subprocess.run(
        [tool("detect-secrets"), "scan", "--all-files", "--disable-plugin", "KeywordDetector", "."],
        cwd=ansible_dir,
        capture_output=True,
        text=True,
        check=True,
    )
    assert json.loads(scan.stdout)["results"] == {}
    # The check finds a password written in clear.
    planted = tmp_path / "group_vars" / "all"
    planted.mkdir(parents=True)
    (planted / "vault.yml").write_text("vault_mlflow_admin_password: hunter2-in-clear-2024\n")
    assert literal_secrets(tmp_path) == [
        "group_vars/all/vault.yml:1: vault_mlflow_admin_password: hunter2-in-clear-2024"
    ]


def unreachable_inventory(tmp_path: Path) -> Path:
    """A host the preflight judges without connecting to it: no gathering, only asserts."""
    inventory = tmp_path / "hosts.yml"
    inventory.write_text(
        yaml.safe_dump(
            {
                "all": {
                    "hosts": {"nowhere": {"ansible_host": "192.0.2.1"}},
                    "children": {
                        group: {"hosts": {"nowhere": None}}
                        for group in ("tracking", "serving", "monitoring")
                    },
                }
            }
        )
    )
    return inventory


@pytest.mark.parametrize("missing", ["MLFLOW_CI_PASSWORD", "API_ADMIN_TOKEN"])
def test_a_missing_secret_stops_the_play_naming_it(project: Path, tmp_path: Path, missing: str):
    env = {k: v for k, v in secret_values().items() if k != missing}
    inventory = unreachable_inventory(tmp_path)
    result = ansible(
        project,
        "ansible-playbook",
        "-i",
        "inventories/dev",
        "-i",
        str(inventory),
        "--limit",
        "nowhere",
        "site.yml",
        env={**{k: "" for k in SECRETS.values()}, **env},
    )
    variable = next(v for v, e in SECRETS.items() if e == missing)
    assert result.returncode != 0
    assert f"{variable} is not set" in result.stdout
    # The play stopped in the preflight: no task of a role ran, nothing changed.
    assert "changed=0" in result.stdout
    assert "TASK [common" not in result.stdout


@pytest.mark.slow  # the first `uv tool run` of ansible installs it (then it is cached)
def test_an_unknown_environment_stops_the_play_naming_it(project: Path):
    result = make(project, "provision", "ENV=nope", check=False)
    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert "ansible/inventories/nope" in output
    assert "TASK [" not in output


def test_provision_needs_env(project: Path):
    result = subprocess.run(["make", "provision"], cwd=project, capture_output=True, text=True,
                            stdin=subprocess.DEVNULL)  # fmt: skip
    assert result.returncode != 0
    assert "give ENV=dev, staging or prod" in result.stderr
