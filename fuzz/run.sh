#!/usr/bin/env bash
# Runs every fuzz target for a bounded time (default 60 s each) on the
# committed seed corpora. Needs nightly and cargo-fuzz:
#   cargo install cargo-fuzz --locked
#   fuzz/run.sh [seconds]
set -euo pipefail
cd "$(dirname "$0")"
secs="${1:-60}"
# The oracles run guests built for wasm32-wasip1. Build them with the
# project's stable toolchain (nightly may have no wasm target) and hand
# them to the fuzz build.
(cd .. && cargo build --release -p fnhost-test-guests)
export FNHOST_PREBUILT_GUESTS="$(cd .. && pwd)/target/guests/wasm32-wasip1/release"
for t in register_bytes register_smith abi_boundary json_payload wasi_calls; do
  echo "== $t (${secs}s)"
  # Work on a copy so the committed seeds stay small; findings go to artifacts/.
  mkdir -p "target/corpus/$t"
  cp -n corpus/"$t"/* "target/corpus/$t/" 2>/dev/null || true
  cargo +nightly fuzz run "$t" "target/corpus/$t" -- -max_total_time="$secs" -rss_limit_mb=4096
done
