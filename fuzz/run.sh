#!/usr/bin/env bash
# Runs every fuzz target for SECONDS (default 600) each, two at a time, with the seed
# corpus; findings land in fuzz/artifacts/TARGET/ (copy them to fuzz/regressions/TARGET/
# once fixed). Needs `cargo install cargo-fuzz`; the stable toolchain works with
# RUSTC_BOOTSTRAP=1.
#   fuzz/run.sh [SECONDS] [TARGET...]
#   fuzz/run.sh --cmin [TARGET...]   # fold corpus/TARGET into corpus-min/TARGET (committed)
set -euo pipefail
cd "$(dirname "$0")"
export RUSTC_BOOTSTRAP=1
all=(frame content spool_block env_file webhook_signature)

if [ "${1:-}" = "--cmin" ]; then
  shift
  targets=("$@")
  [ ${#targets[@]} -gt 0 ] || targets=("${all[@]}")
  for t in "${targets[@]}"; do
    mkdir -p "corpus-min/$t"
    [ -d "corpus/$t" ] && cp -n "corpus/$t"/* "corpus-min/$t"/ 2>/dev/null || true
    cargo fuzz cmin --release "$t" "corpus-min/$t" > "/tmp/cmin-$t.log" 2>&1
    echo "$t: $(ls "corpus-min/$t" | wc -l) inputs in corpus-min/$t"
  done
  exit 0
fi

secs=${1:-600}; shift || true
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=("${all[@]}")
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
