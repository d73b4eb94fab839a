#!/usr/bin/env bash
# Development environment: Graphviz (and, with --browser, Chromium for the browser tests)
# from the system's package manager, then .venv with the pinned Python packages (with
# --browser, as `make test` runs it, also those of the integration tests).
set -euo pipefail
cd "$(dirname "$0")/.."

missing=()
command -v dot >/dev/null 2>&1 || missing+=(graphviz)
if [[ "${1:-}" == "--browser" ]] && [[ ! -x /usr/bin/chromium ]]; then
  missing+=(chromium fonts-dejavu-core)
fi
if ((${#missing[@]})); then
  if command -v apt-get >/dev/null 2>&1; then
    sudo=""
    [[ "$(id -u)" -ne 0 ]] && sudo="sudo"
    echo "installing ${missing[*]} with apt-get" >&2
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  else
    echo "please install: ${missing[*]} (macOS: brew install graphviz; conda: conda install -c conda-forge graphviz)" >&2
    exit 1
  fi
fi

python3 -c 'import sys; sys.exit(sys.version_info < (3, 10))' || { echo "nnviz-report needs Python 3.10 or newer" >&2; exit 1; }
[[ -x .venv/bin/python ]] || python3 -m venv .venv
requirements=(-r requirements-dev.txt)
# The tests' integrations (Lightning, Hugging Face, trackers, notebooks) in the same pip call,
# so that nothing they pull replaces the pinned CPU build of torch.
if [[ "${1:-}" == "--browser" ]]; then
  requirements+=(-r requirements-integrations.txt)
fi
.venv/bin/python -m pip install -q --disable-pip-version-check "${requirements[@]}"
.venv/bin/python -m pip install -q --disable-pip-version-check --no-deps --no-build-isolation -e .
