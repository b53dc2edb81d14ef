#!/usr/bin/env bash
# Build every fuzz target and run each for a few seconds from a seed corpus of real
# files (make-seeds.py). Fails when any target crashes, hangs or runs out of memory;
# the input that did it is left in fuzz/artifacts/<target>/.
#
# usage: fuzz/smoke.sh [SECONDS_PER_TARGET] [TARGET...]      (default 10 s, every target)
# FUZZ_SEED (default 1) fixes libFuzzer's random seed, so that a CI run repeats what the
# last one did; FUZZ_SEED=0 lets libFuzzer choose (a new path each run).
# Needs cargo-fuzz (`cargo install cargo-fuzz --locked`); builds with the stable
# toolchain (`-s none`: coverage instrumentation only, no sanitizer needs nightly).
set -euo pipefail
cd "$(dirname "$0")"
secs=${1:-10}
shift || true
cargo fuzz build -s none -O
bin=target/x86_64-unknown-linux-gnu/release
targets=("$@")
[ ${#targets[@]} -gt 0 ] || mapfile -t targets < <(cargo fuzz list)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
python3 make-seeds.py "$work/seeds"
failed=()
for t in "${targets[@]}"; do
  mkdir -p "$work/corpus/$t" "artifacts/$t"
  [ -d "$work/seeds/$t" ] && cp "$work/seeds/$t"/* "$work/corpus/$t/" 2>/dev/null || true
  start=$(date +%s)
  if "$bin/$t" "$work/corpus/$t" -max_total_time="$secs" -timeout=20 -rss_limit_mb=2048 -seed="${FUZZ_SEED:-1}" \
       -artifact_prefix="artifacts/$t/" -print_final_stats=1 >"$work/$t.log" 2>&1; then
    runs=$(grep -m1 -o 'stat::number_of_executed_units: *[0-9]*' "$work/$t.log" | grep -o '[0-9]*$' || echo '?')
    echo "ok    $t: $runs runs in $(( $(date +%s) - start )) s, corpus $(ls "$work/corpus/$t" | wc -l)"
  else
    echo "FAIL  $t (input in fuzz/artifacts/$t/):"
    grep -E 'panicked|ERROR|SUMMARY|Test unit written' "$work/$t.log" | head -n 8 | sed 's/^/      /'
    failed+=("$t")
  fi
done
if [ ${#failed[@]} -gt 0 ]; then
  echo "fuzz smoke: ${#failed[@]} of ${#targets[@]} targets failed: ${failed[*]}"
  exit 1
fi
echo "fuzz smoke: all ${#targets[@]} targets ran ${secs} s each without a failure"
