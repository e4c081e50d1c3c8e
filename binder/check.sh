#!/usr/bin/env bash
# What Binder would do, without Docker: a fresh venv, binder/requirements.txt, then postBuild,
# run on the committed tree (as Binder would), so the working tree's data/ is left alone.
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/repo"
git -C "$repo" archive HEAD | tar xf - -C "$work/repo"   # what Binder builds: the committed tree
python3 -m venv "$work/venv"
export PATH="$work/venv/bin:$PATH"
python -m pip install -q --upgrade pip
python -m pip install -q -r "$work/repo/binder/requirements.txt"
cd "$work/repo"
DEMO_AREA="${DEMO_AREA:-741}" bash binder/postBuild
workbench data info
test -f data/answers.duckdb
echo "binder-check: OK (requirements installed, postBuild built the demo register and its answers)"
