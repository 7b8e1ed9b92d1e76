#!/usr/bin/env bash
# Bake the template into OUTPUT_DIR (default build/) with extra cookiecutter answers, e.g.
#   scripts/bake.sh build default_model=itemknn
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
out=${1:-build}; shift || true
"$here/.venv/bin/cookiecutter" --no-input --overwrite-if-exists --output-dir "$out" "$here" "$@"
