#!/usr/bin/env bash
# A/B comparison of two commits on the fresh, warm and queue paths.
#
#   benches/ab.sh OLD_REV [NEW_REV] [ROUNDS] [N]
#
# Builds `benches/src/bin/ab.rs` (this checkout's copy, at both commits;
# the old commit in a worktree under target/ab) in this checkout's target
# dir, so wasmtime and the other dependencies are built once; then runs the two
# binaries alternately (old, new, old, new, ...) for ROUNDS rounds (default
# 6). Each run measures fnhost beside raw wasmtime in its own process and
# reports ratios to raw; the summary gives, per path, the median of the
# per-round new/old ratios of those ratios with their min-max. NEW_REV
# defaults to the working tree.
set -euo pipefail
cd "$(dirname "$0")/.."
old=${1:?usage: benches/ab.sh OLD_REV [NEW_REV] [ROUNDS] [N]}
new=${2:-WORKTREE}
rounds=${3:-6}
n=${4:-10000}
work=target/ab
root=$(pwd)
mkdir -p "$work"
build() { # rev -> path of the ab binary
  local rev=$1 dir
  if [ "$rev" = WORKTREE ]; then
    dir=.
  else
    dir="$work/src-$(git rev-parse --short "$rev")"
    [ -d "$dir" ] || git worktree add --detach "$dir" "$rev" >&2
    cp benches/src/bin/ab.rs "$dir/benches/src/bin/ab.rs"
  fi
  # One target dir for both: the commits' own crates differ (their paths
  # do), the registry dependencies are shared. The binary is copied out
  # before the other build overwrites it.
  (cd "$dir" && cargo build --release -q -p fnhost-benches --bin ab --target-dir "$root/target") >&2
  local out
  out="$work/ab-$( [ "$rev" = WORKTREE ] && echo worktree || git rev-parse --short "$rev")"
  cp target/release/ab "$out"
  echo "$out"
}
a=$(build "$old")
b=$(build "$new")
: > "$work/old.jsonl"
: > "$work/new.jsonl"
for i in $(seq "$rounds"); do
  echo "round $i/$rounds" >&2
  "$a" "$n" >> "$work/old.jsonl"
  "$b" "$n" >> "$work/new.jsonl"
done
python3 - "$work/old.jsonl" "$work/new.jsonl" "$old" "$new" <<'PY'
import json, statistics, sys
old = [json.loads(l) for l in open(sys.argv[1])]
new = [json.loads(l) for l in open(sys.argv[2])]
print(f"A/B {sys.argv[3]} -> {sys.argv[4]}, {len(old)} interleaved rounds")
print("| path | old (ratio to raw, median) | new | new/old per round: median (min-max) |")
print("|---|---|---|---|")
for key, label, lower_better in [("fresh_vs_raw", "fresh invoke 64 B p50 / raw-fresh p50", True),
                                  ("warm_vs_raw", "warm invoke 64 B p50 / raw-reuse p50", True),
                                  ("queue_vs_raw_2t", "invoke_batch 2 workers / raw-fresh 2 threads (throughput)", False),
                                  ("async_vs_batch", "invoke_async / invoke_batch, 2 workers (throughput)", False)]:
    if not all(key in x for x in old + new):
        continue
    r = [n[key] / o[key] for o, n in zip(old, new)]
    print(f"| {label} | {statistics.median(o[key] for o in old):.3f} | {statistics.median(x[key] for x in new):.3f} | "
          f"{statistics.median(r):.3f} ({min(r):.3f}-{max(r):.3f}) |")
PY
