#!/usr/bin/env bash
# Re-resolve the generated project's dependencies and pin every one of them (transitive ones
# included) in the payload's pyproject.toml as uv constraint-dependencies, so every bake installs
# the versions the template tests ran with. Run after changing any dependency range.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
uv="$here/.venv/bin/uv"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
"$here/scripts/bake.sh" "$work" >/dev/null
project="$work/shop-recommender"
# Resolve from the ranges alone, without the current pins.
python3 - "$project/pyproject.toml" <<'PY'
import re, sys
path = sys.argv[1]
text = open(path).read()
open(path, "w").write(re.sub(r"constraint-dependencies = \[.*?\]\n", "", text, flags=re.S))
PY
(cd "$project" && "$uv" lock --upgrade -q)
pins=$(cd "$project" && "$uv" export --all-packages --all-groups --no-hashes --no-emit-workspace \
  --no-header --no-annotate --format requirements-txt)
python3 - "$here/{{cookiecutter.project}}/pyproject.toml" "$pins" <<'PY'
import re, sys
path, pins = sys.argv[1], sys.argv[2]
lines = "".join(f'    "{line.strip()}",\n' for line in pins.splitlines() if line.strip())
block = f"constraint-dependencies = [\n{lines}]\n"
text = open(path).read()
text = re.sub(r"constraint-dependencies = \[.*?\]\n", lambda _: block, text, flags=re.S)
open(path, "w").write(text)
PY
echo "pinned $(grep -c '==' <<<"$pins") packages in {{cookiecutter.project}}/pyproject.toml"
