#!/usr/bin/env bash
# run.sh: cebulk's validate+normalise next to a peer doing the same work.
#
# The peer is the npm package mixpanel-import (Mixpanel's own streaming
# importer), run in its dry-run mode ("just transform data; don't send it")
# over the same generated 1,000,000-row files BenchmarkValidate reads:
# activities and users, JSON lines and CSV. Both sides read a local file,
# parse it, validate and normalise each record, and send nothing.
#
# Usage: scripts/bench-peer/run.sh            (all four files)
#        scripts/bench-peer/run.sh activities-1000000.jsonl
#
# Needs Go, node >= 20.18 and npm. The peer is installed (pinned) into
# scripts/bench-peer/.peer and the files are generated into
# ${CEBULK_BENCH_DIR:-scripts/bench-peer/.data} (about 1.4 GB); both are
# ignored by git. Peak memory comes from /usr/bin/time -v when present.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
peer_version=3.1.43
data=${CEBULK_BENCH_DIR:-$here/.data}
mkdir -p "$data" "$here/.peer"

cli="$here/.peer/node_modules/mixpanel-import/index.js"
if [ ! -f "$cli" ]; then
  echo "run.sh: installing mixpanel-import@$peer_version into $here/.peer" >&2
  npm install --prefix "$here/.peer" --no-audit --no-fund --loglevel=error "mixpanel-import@$peer_version" >&2
fi

files=("$@")
if [ ${#files[@]} -eq 0 ]; then
  files=(activities-1000000.jsonl users-1000000.jsonl activities-1000000.csv users-1000000.csv)
fi

# cebulk: BenchmarkValidate generates the files (once) and measures them.
# CEBULK_SKIP_OURS=1 reuses the last figures (to rerun the peer only).
if [ -z "${CEBULK_SKIP_OURS:-}" ] || [ ! -f "$data/cebulk-bench.txt" ]; then
  echo "== cebulk BenchmarkValidate (files in $data)" >&2
  (cd "$root" && CEBULK_BENCH_DIR="$data" go test -count=1 -run '^$' -bench 'BenchmarkValidate' -benchtime 1x ./internal/importer/) | tee "$data/cebulk-bench.txt" >&2
fi

timer=()
if [ -x /usr/bin/time ]; then timer=(/usr/bin/time -v); fi

printf '\n%-26s %14s %16s %14s %14s %14s\n' file "cebulk rec/s" "cebulk heap" "peer rec/s" "peer seconds" "peer max RSS" > "$data/compare.txt"
for f in "${files[@]}"; do
  path="$data/$f"
  if [ ! -f "$path" ]; then echo "run.sh: $path missing (BenchmarkValidate writes it)" >&2; exit 2; fi
  type=event; [[ $f == users* ]] && type=user
  format=jsonl; [[ $f == *.csv ]] && format=csv
  header=0; [[ $format == csv ]] && header=1
  rows=$(( $(wc -l < "$path") - header ))
  echo "== mixpanel-import --dryRun $f ($rows rows)" >&2
  log="$data/peer-${f}.log"
  start=$(date +%s.%N)
  # dryRun keeps every transformed record in memory (job.dryRunResults):
  # give node room, so that the figure is throughput, not an out-of-memory.
  if ! NODE_OPTIONS=--max-old-space-size=12288 "${timer[@]}" node "$cli" "$path" --dryRun --type "$type" --format "$format" \
      --fixData --verbose false --logs false --where "$data" >"$log" 2>&1; then
    echo "run.sh: mixpanel-import failed on $f; see $log" >&2
    tail -20 "$log" >&2
    continue
  fi
  end=$(date +%s.%N)
  secs=$(echo "$end - $start" | bc -l)
  rate=$(echo "$rows / $secs" | bc -l)
  rss=$(sed -n 's/.*Maximum resident set size (kbytes): //p' "$log")
  name=${f%%-*}/${format}
  ours=$(sed -n "s|^BenchmarkValidate/${name}-[0-9]*.* \([0-9.]*\) records/s.*|\1|p" "$data/cebulk-bench.txt")
  heap=$(sed -n "s|^BenchmarkValidate/${name}-[0-9]*.* \([0-9.]*\) peak-heap-MiB.*|\1|p" "$data/cebulk-bench.txt")
  printf '%-26s %14.0f %10.1f MiB %14.0f %14.1f %11s MB\n' "$f" "${ours:-0}" "${heap:-0}" "$rate" "$secs" "$(( ${rss:-0} / 1024 ))" >> "$data/compare.txt"
done
cat "$data/compare.txt"
