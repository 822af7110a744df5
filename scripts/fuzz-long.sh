#!/usr/bin/env bash
# The long fuzz run behind docs/SECURITY.md's fuzzing table: builds every cargo-fuzz target once,
# then runs each one for FUZZ_SECS seconds (default 600), one at a time, and prints a table line per
# target (executions, corpus size, coverage, crashes). CI runs the same targets for 20 s each
# (.ci/run); this is the documented long command.
#
#   scripts/fuzz-long.sh                      # every target, 10 minutes each (about 2 hours)
#   FUZZ_SECS=60 scripts/fuzz-long.sh envelope payload
#   (FUZZ_SKIP_SEEDS=1: keep the corpus as it is; FUZZ_SKIP_BUILD=1: use the binaries built
#   before; FUZZ_LOGS=DIR: where the logs and summary.tsv go)
#
# On a shared machine, run it at the lowest CPU priority in its own session (autogroup nice):
#   setsid bash -c 'echo 19 > /proc/self/autogroup; exec nice -n 19 scripts/fuzz-long.sh' &
#
# The binaries are run directly after one build (not through `cargo fuzz run`, which would rebuild
# whenever the checkout changes under a long run). Needs a nightly toolchain and cargo-fuzz.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh
secs="${FUZZ_SECS:-600}"
# Sanitizer builds get their own target dir (their flags differ from the normal build's).
export CARGO_TARGET_DIR="${HEARTH_FUZZ_TARGET_DIR:-${CARGO_TARGET_DIR:-$PWD/target}-fuzz}"
logs="${FUZZ_LOGS:-$CARGO_TARGET_DIR/fuzz-logs}"
mkdir -p "$logs"

if [ "${FUZZ_SKIP_SEEDS:-0}" != 1 ]; then
  (unset CARGO_TARGET_DIR; source scripts/env.sh
   cargo run --quiet -p hearth-protocol --example fuzz_seeds -- fuzz/corpus
   cargo run --quiet -p hearth-node --example fuzz_seeds -- fuzz/corpus)
fi
# FUZZ_SKIP_BUILD=1 runs the binaries already built (e.g. to rerun a target of an earlier build).
[ "${FUZZ_SKIP_BUILD:-0}" = 1 ] || (cd fuzz && cargo +nightly fuzz build)
bin="$CARGO_TARGET_DIR/x86_64-unknown-linux-gnu/release"

targets=("$@")
[ ${#targets[@]} -eq 0 ] && mapfile -t targets < <(cd fuzz && cargo +nightly fuzz list)

summary="$logs/summary.tsv"
[ -f "$summary" ] || printf 'target\tseconds\tcpu_seconds\texecutions\texec_per_s\tcorpus_files\tcov\tft\tcrashes\tfinished_at\n' > "$summary"
for t in "${targets[@]}"; do
  mkdir -p "fuzz/corpus/$t" "fuzz/artifacts/$t"
  log="$logs/$t.log"
  echo "::: $t for $secs s (log: $log)"
  status=0
  # CPU seconds (user + sys) as well as wall time: on a shared machine at low priority the
  # executions depend on the CPU share the run got.
  cpu0=$(awk '{print $14 + $15 + $16 + $17}' /proc/$$/stat)
  (cd fuzz && "$bin/$t" "corpus/$t" -artifact_prefix="artifacts/$t/" -max_total_time="$secs" \
     -rss_limit_mb=2048 -print_final_stats=1) > "$log" 2>&1 || status=$?
  cpu1=$(awk '{print $14 + $15 + $16 + $17}' /proc/$$/stat)
  cpu=$(( (cpu1 - cpu0) / $(getconf CLK_TCK) ))
  execs=$(grep -oE 'stat::number_of_executed_units: *[0-9]+' "$log" | grep -oE '[0-9]+$' | tail -1)
  speed=$(grep -oE 'stat::average_exec_per_sec: *[0-9]+' "$log" | grep -oE '[0-9]+$' | tail -1)
  last=$(grep -E '^#[0-9]+' "$log" | tail -1)
  cov=$(grep -oE 'cov: [0-9]+' <<<"$last" | grep -oE '[0-9]+' || true)
  ft=$(grep -oE 'ft: [0-9]+' <<<"$last" | grep -oE '[0-9]+' || true)
  files=$(find "fuzz/corpus/$t" -type f | wc -l)
  crashes=0
  [ "$status" -ne 0 ] && crashes=1
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$t" "$secs" "$cpu" "${execs:-?}" "${speed:-?}" "$files" \
    "${cov:-?}" "${ft:-?}" "$crashes" "$(date -u +%FT%TZ)" | tee -a "$summary"
  if [ "$status" -ne 0 ]; then
    echo "!!! $t stopped with status $status: see $log and fuzz/artifacts/$t/" >&2
  fi
done
