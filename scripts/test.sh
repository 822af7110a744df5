#!/usr/bin/env bash
# The test command: sets up what is missing (Debian packages, model assets) and runs every test.
# Usage: scripts/test.sh [extra cargo test args]
set -euo pipefail
source "$(dirname "$0")/env.sh"
hearth_setup_machine
"$HEARTH_ROOT/scripts/fetch-assets.sh"
cd "$HEARTH_ROOT"
cargo test --workspace --all-targets "$@"
cargo test --workspace --doc "$@"

# A client nobody here wrote: the official `openai` Python package (from PyPI, in a venv kept next
# to the build) against `hearth serve` and a running `hearth node` (docs/API.md).
venv="${HEARTH_OPENAI_VENV:-${CARGO_TARGET_DIR:-$HEARTH_ROOT/target}/venv-openai}"
[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
"$venv/bin/python" -c "import openai, prometheus_client" 2>/dev/null \
    || "$venv/bin/pip" install --quiet "openai==3.54.0" "prometheus-client==0.26.0"
HEARTH_OPENAI_PYTHON="$venv/bin/python" cargo test -p hearth-node --features openai-client-tests --test member openai
