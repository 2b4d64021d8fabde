#!/usr/bin/env bash
# Runs every fuzz target for SECONDS (default 600) each, two at a time, with the seed
# corpus; findings land in fuzz/artifacts/TARGET/. Needs `cargo install cargo-fuzz`;
# the stable toolchain works with RUSTC_BOOTSTRAP=1.
#   fuzz/run.sh [SECONDS] [TARGET...]
set -euo pipefail
cd "$(dirname "$0")"
secs=${1:-600}; shift || true
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(frame content spool_block env_file webhook_signature)
export RUSTC_BOOTSTRAP=1
cargo fuzz build --release >/dev/null
run() {
  mkdir -p "corpus/$1"
  cargo fuzz run --release "$1" "corpus/$1" "seeds/$1" -- -max_total_time="$secs" -rss_limit_mb=2048 -print_final_stats=1 > "/tmp/fuzz-$1.log" 2>&1 \
    && echo "$1: done ($(grep -E '^stat::number_of_executed_units' "/tmp/fuzz-$1.log" | awk '{print $2}') runs)" \
    || echo "$1: FAILED, see /tmp/fuzz-$1.log and fuzz/artifacts/$1/"
}
for ((i = 0; i < ${#targets[@]}; i += 2)); do
  run "${targets[i]}" &
  if [ $((i + 1)) -lt ${#targets[@]} ]; then run "${targets[i + 1]}" & fi
  wait
done
