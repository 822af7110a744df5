# Sourced by the scripts in this folder: shared environment and one-time machine setup.
# shellcheck shell=bash

HEARTH_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export HEARTH_ROOT

# One persistent target dir outside the clone when the machine has the usual work folder, so a new
# clone (CI) reuses earlier builds; otherwise the clone's own target/.
if [ -z "${CARGO_TARGET_DIR:-}" ] && [ -d /work ] && [ -w /work ]; then
  export CARGO_TARGET_DIR=/work/target
fi

# Debian packages the build needs: clang/libclang (bindgen for librocksdb-sys), Debian's RocksDB,
# OpenSSL headers (opendp), pkg-config. Installed only when something is missing.
hearth_setup_machine() {
  local pkgs=(clang libclang-dev librocksdb-dev libssl-dev pkg-config python3 python3-pip python3-venv)
  local missing=()
  for p in "${pkgs[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  # Python may come from elsewhere (pyenv): ask apt for its parts only when they do not work.
  local want=()
  for p in "${missing[@]}"; do
    case "$p" in
      python3) command -v python3 >/dev/null && continue ;;
      python3-pip) python3 -m pip --version >/dev/null 2>&1 && continue ;;
      python3-venv) python3 -c 'import ensurepip, venv' >/dev/null 2>&1 && continue ;;
    esac
    want+=("$p")
  done
  if [ ${#want[@]} -gt 0 ]; then
    echo "installing Debian packages: ${want[*]}" >&2
    local sudo=""
    [ "$(id -u)" -ne 0 ] && sudo="sudo"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${want[@]}" >/dev/null
  fi
  if ! command -v cargo >/dev/null; then
    echo "error: cargo not found; install Rust with rustup (https://rustup.rs) first" >&2
    return 1
  fi
}
