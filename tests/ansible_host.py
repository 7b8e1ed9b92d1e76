"""A Debian host for the Ansible tests: a debootstrapped rootfs reached over
`community.general.chroot`, and what systemd would do there.

There is no systemd inside a chroot (`ansible_service_mgr` reads `sysvinit`), so the roles skip
their unit management there and `start_unit` plays systemd's part: it reads a unit file the
roles (or a Debian package) installed and runs its own `ExecStart` inside the rootfs, as its
`User=`, with its `Environment=`, `EnvironmentFile=` and `WorkingDirectory=`. Everything started
in the rootfs shares this machine's network, so the tests give every service its own port.
"""

from __future__ import annotations

import contextlib
import os
import re
import shlex
import shutil
import signal
import stat
import subprocess
import time
from pathlib import Path

import yaml
from base_image import debootstrap_rootfs

GROUPS = ("tracking", "serving", "monitoring")
# Character devices of major 1 a chroot needs (name: minor).
DEVICES = {"null": 3, "zero": 5, "full": 7, "random": 8, "urandom": 9}
UNIT_FOLDERS = ("etc/systemd/system", "lib/systemd/system", "usr/lib/systemd/system")
# Every secret the playbooks read, and the environment variable secrets.yml reads it from.
SECRETS = {
    "vault_postgresql_mlflow_password": "POSTGRES_MLFLOW_PASSWORD",
    "vault_postgresql_mlflow_auth_password": "POSTGRES_MLFLOW_AUTH_PASSWORD",
    "vault_mlflow_admin_password": "MLFLOW_ADMIN_PASSWORD",
    "vault_mlflow_flask_secret_key": "MLFLOW_FLASK_SECRET_KEY",
    "vault_mlflow_ci_password": "MLFLOW_CI_PASSWORD",
    "vault_mlflow_api_password": "MLFLOW_API_PASSWORD",
    "vault_api_admin_token": "API_ADMIN_TOKEN",
}
RECAP = re.compile(r"^(\S+)\s+:\s+((?:\w+=\d+\s*)+)$", re.MULTILINE)


def secret_values() -> dict[str, str]:
    """The secrets the tests export, by environment variable (12+ characters, as MLflow wants)."""
    return {env: f"test-{env.lower().replace('_', '-')}-0123456789" for env in SECRETS.values()}


def chroot_host(target: Path) -> Path:
    """A fresh bookworm rootfs at `target`, made to look like a booted machine's: the basic
    device nodes, /proc mounted (`release_host` unmounts it), a world-writable /dev/shm, and a
    `policy-rc.d` so that package installs start no daemon (as in container images)."""
    rootfs = debootstrap_rootfs(target)
    dev = rootfs / "dev"
    for name, minor in DEVICES.items():
        node = dev / name
        node.unlink(missing_ok=True)
        os.mknod(node, 0o666 | stat.S_IFCHR, os.makedev(1, minor))
        node.chmod(0o666)
    (dev / "shm").mkdir(exist_ok=True)
    (dev / "shm").chmod(0o1777)
    subprocess.run(["mount", "-t", "proc", "proc", str(rootfs / "proc")], check=True)
    policy = rootfs / "usr/sbin/policy-rc.d"
    policy.write_text("#!/bin/sh\n# The tests start services themselves.\nexit 101\n")
    policy.chmod(0o755)
    return rootfs


def release_host(rootfs: Path) -> None:
    """Stop what runs in the rootfs, unmount its /proc and delete it."""
    stop_processes(rootfs)
    subprocess.run(["umount", "--lazy", str(rootfs / "proc")], capture_output=True)
    shutil.rmtree(rootfs, ignore_errors=True)


def write_inventory(path: Path, rootfs: Path, hostvars: dict | None = None) -> Path:
    """An inventory of one host, the rootfs, in every group the playbooks target."""
    host = {
        "ansible_connection": "community.general.chroot",
        "ansible_host": str(rootfs),
        "ansible_python_interpreter": "/usr/bin/python3",
        **(hostvars or {}),
    }
    name = rootfs.name
    inventory = {
        "all": {
            "hosts": {name: host},
            "children": {group: {"hosts": {name: None}} for group in GROUPS},
        }
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(inventory, sort_keys=False))
    return path


def recap(output: str) -> dict[str, dict[str, int]]:
    """ansible-playbook's PLAY RECAP per host: {"host": {"ok": 12, "changed": 0, ...}}."""
    return {
        host: {key: int(value) for key, value in (pair.split("=") for pair in counts.split())}
        for host, counts in RECAP.findall(output)
    }


def changed_tasks(output: str) -> list[str]:
    """The names of the tasks that reported `changed` (for a readable assertion)."""
    tasks, task = [], None
    for line in output.splitlines():
        if line.startswith("TASK ["):
            task = line[len("TASK [") :].split("]")[0]
        elif line.startswith("changed:") and task:
            tasks.append(task)
    return tasks


def find_unit(rootfs: Path, unit: str) -> Path:
    for folder in UNIT_FOLDERS:
        path = rootfs / folder / unit
        if path.is_file():
            return path
    raise FileNotFoundError(f"{unit} not installed in {rootfs}")


def read_unit(path: Path) -> dict[str, list[str]]:
    """The [Service] settings of a unit file: name -> every value it was given, in order."""
    settings: dict[str, list[str]] = {}
    section = None
    for raw in path.read_text().replace("\\\n", " ").splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            section = line.strip("[]")
        elif section == "Service" and "=" in line:
            key, value = line.split("=", 1)
            settings.setdefault(key.strip(), []).append(value.strip())
    return settings


def unit_environment(rootfs: Path, settings: dict[str, list[str]]) -> dict[str, str]:
    """What systemd puts in the service's environment: EnvironmentFile= lines, then
    Environment= assignments (later ones win, as in systemd)."""
    env: dict[str, str] = {"PATH": "/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin"}
    for spec in settings.get("EnvironmentFile", []):
        optional = spec.startswith("-")
        path = rootfs / spec.lstrip("-").lstrip("/")
        if not path.is_file():
            if optional:
                continue
            raise FileNotFoundError(f"EnvironmentFile {spec} missing in {rootfs}")
        for line in path.read_text().splitlines():
            line = line.strip()
            if line and not line.startswith("#") and "=" in line:
                key, value = line.split("=", 1)
                env[key.strip()] = _unquote(value.strip())
    for assignments in settings.get("Environment", []):
        for word in shlex.split(assignments):
            key, value = word.split("=", 1)
            env[key] = value
    return env


def _unquote(value: str) -> str:
    if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
        return value[1:-1]
    return value


def _expand(word: str, env: dict[str, str]) -> list[str]:
    """systemd's $VAR (split into words) and ${VAR} (one word) in an ExecStart line."""
    whole = re.fullmatch(r"\$(\w+)", word)
    if whole:
        return shlex.split(env.get(whole.group(1), ""))
    return [re.sub(r"\$\{(\w+)\}", lambda m: env.get(m.group(1), ""), word)]


def start_unit(
    rootfs: Path, unit: str, env: dict[str, str] | None = None, log: Path | None = None
) -> subprocess.Popen:
    """Start `unit` inside the rootfs from its own ExecStart, as its User=, in its environment
    (plus `env`); its output goes to `log` (a file) or is discarded."""
    settings = read_unit(find_unit(rootfs, unit))
    environment = {**unit_environment(rootfs, settings), **(env or {})}
    command = settings["ExecStart"][-1].lstrip("@-+!")
    argv = [part for word in shlex.split(command) for part in _expand(word, environment)]
    user = settings.get("User", ["root"])[-1]
    group = settings.get("Group", [user])[-1]
    workdir = settings.get("WorkingDirectory", ["/"])[-1].lstrip("-")
    for folder in settings.get("RuntimeDirectory", []):
        for name in folder.split():
            runtime = rootfs / "run" / name
            runtime.mkdir(parents=True, exist_ok=True)
            subprocess.run(["chroot", str(rootfs), "chown", f"{user}:{group}", f"/run/{name}"])
    shell = f"cd {shlex.quote(workdir)} && exec {shlex.join(argv)}"
    output = log.open("ab") if log else subprocess.DEVNULL
    return subprocess.Popen(
        ["chroot", f"--userspec={user}:{group}", str(rootfs), "/usr/bin/env", "-i"]
        + [f"{key}={value}" for key, value in {"HOME": home(rootfs, user), **environment}.items()]
        + ["/bin/sh", "-c", shell],
        stdout=output,
        stderr=subprocess.STDOUT,
        start_new_session=True,
        stdin=subprocess.DEVNULL,
    )


def home(rootfs: Path, user: str) -> str:
    """The user's home folder from the rootfs' /etc/passwd (systemd sets HOME from it)."""
    for line in (rootfs / "etc/passwd").read_text().splitlines():
        fields = line.split(":")
        if fields[0] == user:
            return fields[5]
    return "/"


def processes_in(rootfs: Path) -> list[int]:
    """The pids whose root directory is the rootfs."""
    root = rootfs.resolve()
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if Path(os.readlink(entry / "root")).resolve() == root:
                pids.append(int(entry.name))
        except OSError:
            continue
    return pids


def stop_processes(rootfs: Path, grace: float = 10) -> None:
    """SIGTERM every process of the rootfs, then SIGKILL what is left after `grace` s."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid in processes_in(rootfs):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
        deadline = time.monotonic() + grace
        while processes_in(rootfs) and time.monotonic() < deadline:
            time.sleep(0.2)
        if not processes_in(rootfs):
            return
