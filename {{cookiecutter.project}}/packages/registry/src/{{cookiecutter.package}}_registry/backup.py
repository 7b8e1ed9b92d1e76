"""Back up and restore the registry: MLflow's tracking database and the artifacts its versions
point to, into one folder with a manifest (what, when, the model's versions and champion, a
sha256 per file).

SQLite is copied with the sqlite3 backup API (a consistent copy while the API reads it);
PostgreSQL is dumped with `pg_dump --format=custom` and restored with `pg_restore` in one
transaction (PostgreSQL's client tools: `apt-get install postgresql-client`). A restore checks
every file against the manifest before it changes anything, and moves a SQLite database aside
instead of overwriting it.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import re
import shutil
import sqlite3
import subprocess
import tarfile
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit, urlunsplit

from {{ cookiecutter.package }}_core.cli import BadInput, Failed
from {{ cookiecutter.package }}_core.shared import CHAMPION

MANIFEST = "manifest.json"
FORMAT = 1
SQLITE, POSTGRESQL = "sqlite", "postgresql"
DATABASE_FILES = {SQLITE: "mlflow.db", POSTGRESQL: "mlflow.dump"}
AUTH_FILES = {SQLITE: "mlflow_auth.db", POSTGRESQL: "mlflow_auth.dump"}  # the server's users
ARTIFACTS_FILE = "artifacts.tar.gz"
ARTIFACTS_ARCNAME = "artifacts"
DELETED_VERSION = "Deleted_Internal"  # the stage MLflow gives a deleted model version


@dataclass(frozen=True)
class Database:
    kind: str
    uri: str  # as given (a SQLAlchemy URI)

    @property
    def path(self) -> Path:
        """The SQLite file (`sqlite:///relative.db`, `sqlite:////absolute.db`)."""
        return Path(unquote(urlsplit(self.uri).path[1:]))

    @property
    def libpq_uri(self) -> str:
        """The URI PostgreSQL's tools take: without SQLAlchemy's `+driver`."""
        return re.sub(r"^postgres(ql)?(\+\w+)?://", "postgresql://", self.uri)

    @property
    def shown(self) -> str:
        """The URI without its password, for messages and the manifest."""
        parts = urlsplit(self.uri)
        if parts.password is None:
            return self.uri
        netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
        return urlunsplit(parts._replace(netloc=netloc))


def database(uri: str, named_by: str = "--database") -> Database:
    """The registry database a URI names; an MLflow server's URL is bad input."""
    scheme = uri.split(":", 1)[0].lower()
    if scheme in ("http", "https"):
        raise BadInput(
            f"{named_by} {uri} is an MLflow server, not its database: run this on the tracking "
            "host with --database <the server's backend store URI> and --artifacts <its "
            "artifacts directory>"
        )
    if scheme == SQLITE:
        found = Database(SQLITE, uri)
        if not uri.startswith("sqlite:///") or found.path.name in ("", ":memory:"):
            raise BadInput(f"{uri}: not a SQLite file URI (sqlite:///mlflow.db)")
        return found
    if re.match(r"^postgres(ql)?(\+\w+)?$", scheme):
        return Database(POSTGRESQL, uri)
    raise BadInput(f"{uri}: back up and restore know sqlite:/// and postgresql:// databases")


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


# --- What the registry holds: the model's versions and its champion ---------------------------


def _sqlite_rows(path: Path, query: str, *params: str) -> list[tuple[str, ...]]:
    connection = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return [tuple(str(cell) for cell in row) for row in connection.execute(query, params)]
    except sqlite3.DatabaseError as error:
        raise BadInput(f"{path} is not an MLflow database: {error}") from error
    finally:
        connection.close()


def _postgres_rows(db: Database, query: str, name: str) -> list[tuple[str, ...]]:
    psql = _tool("psql")
    result = subprocess.run(
        [
            *(psql, "-X", "--quiet", "--csv", "--tuples-only", "-v", "ON_ERROR_STOP=1"),
            *("-v", f"name={name}", f"--dbname={db.libpq_uri}"),
        ],
        input=query.replace("?", ":'name'") + ";\n",
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        raise Failed(f"psql could not read {db.shown}: {result.stderr.strip()}")
    return [tuple(row) for row in csv.reader(io.StringIO(result.stdout)) if row]


def registry_state(db: Database, name: str, sqlite_file: Path | None = None) -> dict[str, Any]:
    """The versions of model `name` (not deleted) and the version that holds `champion`."""
    # The only values formatted into the SQL are this module's constants; the name is a parameter.
    versions_query = (
        "SELECT version FROM model_versions WHERE name = ? "  # nosec B608
        f"AND current_stage <> '{DELETED_VERSION}' ORDER BY version"
    )
    champion_query = (
        f"SELECT version FROM registered_model_aliases WHERE name = ? AND alias = '{CHAMPION}'"  # nosec B608
    )
    if db.kind == SQLITE:
        path = sqlite_file or db.path
        versions = _sqlite_rows(path, versions_query, name)
        champion = _sqlite_rows(path, champion_query, name)
    else:
        versions = _postgres_rows(db, versions_query, name)
        champion = _postgres_rows(db, champion_query, name)
    return {
        "name": name,
        "versions": [row[0] for row in versions],
        "champion": champion[0][0] if champion else None,
    }


def local_artifact_root(db: Database) -> Path:
    """Where a SQLite registry's experiments keep their artifacts (`<root>/<experiment id>`)."""
    # Every experiment, deleted ones too (their runs may still be restored).
    rows = _sqlite_rows(db.path, "SELECT artifact_location FROM experiments")
    roots = set()
    for (location,) in rows:
        parts = urlsplit(location)
        if parts.scheme in ("", "file"):
            roots.add(Path(unquote(parts.path)).parent)
    if len(roots) != 1:
        found = ", ".join(sorted(map(str, roots))) or "none on this machine"
        raise BadInput(
            f"the experiments' artifacts are not under one folder ({found}): pass --artifacts"
        )
    return roots.pop()


def _tool(program: str) -> str:
    found = shutil.which(program)
    if found is None:
        raise BadInput(
            f"{program} not found: PostgreSQL's client tools are needed "
            "(Debian: apt-get install postgresql-client)"
        )
    return found


def _run(command: list[str], what: str) -> None:
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise Failed(f"{what} failed ({Path(command[0]).name} exit {result.returncode}): "
                     f"{result.stderr.strip()}")  # fmt: skip


# --- Backup ------------------------------------------------------------------------------------


def _readable(db: Database, what: str) -> None:
    """Refuse a database that cannot be copied here, before anything is written."""
    if db.kind == SQLITE and not db.path.is_file():
        raise BadInput(f"no {what} database at {db.path}")
    if db.kind == POSTGRESQL:
        _tool("pg_dump")
        _tool("psql")


def _copy(db: Database, target: Path) -> None:
    """A consistent copy of `db` at `target`: SQLite's backup API, or a pg_dump archive."""
    if db.kind == SQLITE:
        source = sqlite3.connect(f"file:{db.path}?mode=ro", uri=True)
        copy = sqlite3.connect(target)
        try:
            source.backup(copy)
        finally:
            copy.close()
            source.close()
    else:
        _run(
            [_tool("pg_dump"), "--format=custom", f"--dbname={db.libpq_uri}", f"--file={target}"],
            f"pg_dump of {db.shown}",
        )


def backup(
    out: Path, db: Database, artifacts: Path | None, model: str, auth: Database | None = None
) -> dict[str, Any]:
    """Copy the database (and the server's auth database, when given) and archive the artifacts
    into the empty (or new) folder `out`."""
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise BadInput(f"{out} is not an empty folder: back up into a new one")
    _readable(db, "registry")
    if auth is not None:
        _readable(auth, "auth")
    if db.kind == POSTGRESQL and artifacts is None:
        raise BadInput("pass --artifacts <the MLflow server's artifacts directory>")
    root = artifacts if artifacts is not None else local_artifact_root(db)
    if not root.is_dir():
        raise BadInput(f"no artifacts directory {root}: pass --artifacts")

    created = not out.exists()
    out.mkdir(parents=True, exist_ok=True)
    try:
        copy = out / DATABASE_FILES[db.kind]
        if db.kind == SQLITE:
            _copy(db, copy)
            state = registry_state(db, model, sqlite_file=copy)  # what the copy holds
        else:
            state = registry_state(db, model)
            _copy(db, copy)
        files = [copy.name]
        auth_entry = None
        if auth is not None:
            _copy(auth, out / AUTH_FILES[auth.kind])
            auth_entry = {"kind": auth.kind, "uri": auth.shown, "file": AUTH_FILES[auth.kind]}
            files.append(AUTH_FILES[auth.kind])
        with tarfile.open(out / ARTIFACTS_FILE, "w:gz") as archive:
            archive.add(root, arcname=ARTIFACTS_ARCNAME)
        files.append(ARTIFACTS_FILE)
        manifest = {
            "format": FORMAT,
            "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "database": {"kind": db.kind, "uri": db.shown, "file": copy.name},
            "auth_database": auth_entry,
            "artifacts": {"root": str(root.resolve()), "file": ARTIFACTS_FILE},
            "model": state,
            "files": {name: sha256(out / name) for name in files},
        }
        (out / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
    except BaseException:
        for name in (*DATABASE_FILES.values(), *AUTH_FILES.values(), ARTIFACTS_FILE, MANIFEST):
            (out / name).unlink(missing_ok=True)
        if created:
            shutil.rmtree(out, ignore_errors=True)
        raise
    return manifest


# --- Restore -----------------------------------------------------------------------------------


def read_manifest(folder: Path) -> dict[str, Any]:
    """The manifest of a backup folder, every file it lists checked against its sha256."""
    path = folder / MANIFEST
    if not path.is_file():
        raise BadInput(f"{path} not found: not a registry backup")
    try:
        manifest = json.loads(path.read_text())
        kind, files = manifest["database"]["kind"], manifest["files"]
        database_file, artifacts_file = manifest["database"]["file"], manifest["artifacts"]["file"]
    except (ValueError, KeyError, TypeError) as error:
        raise BadInput(f"{path} is not a registry backup manifest: {error!r}") from error
    if manifest.get("format") != FORMAT or kind not in DATABASE_FILES:
        raise BadInput(f"{path}: unknown backup format or database kind {kind!r}")
    auth = manifest.get("auth_database") or {}
    for name in (database_file, artifacts_file, *([auth["file"]] if auth else [])):
        if name not in files or Path(name).name != name:
            raise BadInput(f"{path}: {name!r} is not a file of the backup")
    for name, expected in files.items():
        if not (folder / name).is_file():
            raise BadInput(f"{folder / name} is missing: the backup is incomplete")
        if sha256(folder / name) != expected:
            raise BadInput(f"{folder / name} does not match its sha256 in the manifest: corrupt")
    return manifest


def _checked_members(archive: tarfile.TarFile) -> list[tarfile.TarInfo]:
    members = archive.getmembers()
    for member in members:
        parts = Path(member.name).parts
        unsafe = member.name.startswith("/") or ".." in parts or member.issym() or member.islnk()
        if unsafe or not parts or parts[0] != ARTIFACTS_ARCNAME:
            raise BadInput(f"the artifacts archive holds {member.name!r}: not a registry backup")
    return members


def _put_back(db: Database, copy: Path, stamp: str) -> Path | None:
    """Replace the database with `copy`; returns where a SQLite file it replaced was moved."""
    if db.kind == POSTGRESQL:
        _run(
            [
                *(_tool("pg_restore"), "--clean", "--if-exists", "--no-owner"),
                *("--single-transaction", f"--dbname={db.libpq_uri}", str(copy)),
            ],
            f"pg_restore into {db.shown}",
        )
        return None
    db.path.parent.mkdir(parents=True, exist_ok=True)
    incoming = db.path.with_name(f"{db.path.name}.restoring-{stamp}")
    shutil.copyfile(copy, incoming)
    moved_aside = None
    if db.path.exists():
        moved_aside = db.path.with_name(f"{db.path.name}.before-restore-{stamp}")
        db.path.replace(moved_aside)
        for suffix in ("-wal", "-shm", "-journal"):
            side = db.path.with_name(db.path.name + suffix)
            if side.exists():
                side.replace(moved_aside.with_name(moved_aside.name + suffix))
    incoming.replace(db.path)
    return moved_aside


def restore(
    folder: Path, db: Database, artifacts: Path | None, auth: Database | None = None
) -> dict[str, Any]:
    """Put the backup in `folder` back: the database (and the auth database, when given), then
    the artifacts. Returns the manifest, what the restored database holds, the artifact root
    and the SQLite files the restore moved aside."""
    manifest = read_manifest(folder)
    kind = manifest["database"]["kind"]
    if kind != db.kind:
        raise BadInput(f"{folder} holds a {kind} backup; {db.shown} is {db.kind}")
    saved_auth: dict[str, str] = manifest.get("auth_database") or {}
    if auth is not None and not saved_auth:
        raise BadInput(f"{folder} holds no auth database (backed up without --auth-database)")
    if auth is not None and saved_auth["kind"] != auth.kind:
        raise BadInput(f"{folder} holds a {saved_auth['kind']} auth database; {auth.shown} is not")
    root = artifacts if artifacts is not None else Path(manifest["artifacts"]["root"])
    copy = folder / manifest["database"]["file"]
    try:
        with tarfile.open(folder / manifest["artifacts"]["file"]) as archive:
            _checked_members(archive)
    except tarfile.TarError as error:
        raise BadInput(f"the artifacts archive cannot be read: {error}") from error
    if POSTGRESQL in (db.kind, auth.kind if auth else None):
        _tool("pg_restore")
        _tool("psql")
    if db.kind == SQLITE:
        registry_state(db, manifest["model"]["name"], sqlite_file=copy)  # a readable database

    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    moved_aside = [_put_back(db, copy, stamp)]
    if auth is not None:
        moved_aside.append(_put_back(auth, folder / saved_auth["file"], stamp))

    # Artifacts are written once per run and model id: extracting over the folder adds back what
    # is missing and leaves what was logged since the backup (the folder may be a mount point).
    root.mkdir(parents=True, exist_ok=True)
    with tarfile.open(folder / manifest["artifacts"]["file"]) as archive:
        for member in _checked_members(archive):
            relative = Path(*Path(member.name).parts[1:])
            if member.isdir() or not relative.parts:
                (root / relative).mkdir(parents=True, exist_ok=True)
                continue
            source = archive.extractfile(member)
            if source is None:
                continue
            target = root / relative
            target.parent.mkdir(parents=True, exist_ok=True)
            with source, target.open("wb") as stream:
                shutil.copyfileobj(source, stream)
            os.chmod(target, member.mode & 0o755)

    state = registry_state(db, manifest["model"]["name"])
    if state["champion"] != manifest["model"]["champion"]:
        raise Failed(
            f"restored, but the champion is v{state['champion']}, the backup had "
            f"v{manifest['model']['champion']}"
        )
    return {
        "manifest": manifest,
        "state": state,
        "root": root,
        "moved_aside": [path for path in moved_aside if path is not None],
        "auth_restored": auth is not None,
    }
