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
