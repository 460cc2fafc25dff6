#!/usr/bin/env bash
# send.sh: cebulk import and the npm peer mixpanel-import sending the same
# 1,000,000 events for real to the Mixpanel emulator, in one run.
#
# Usage: scripts/bench-peer/send.sh
#
# What runs, in order:
#   - the file: activities-1000000.jsonl from BenchmarkValidate (generated
#     once into ${CEBULK_BENCH_DIR:-scripts/bench-peer/.data}, 428 MB);
#   - the target: `cebulk emulator -api mixpanel -mp-discard-imports`
#     (validates and counts every event, keeps none) over HTTPS on
#     127.0.0.1:443, a fresh one for each client, with a certificate for
#     api.mixpanel.com signed by a CA made here;
#   - the peer: mixpanel-import (pinned, installed into .peer) has its hosts
#     written into its code (https://api.mixpanel.com, -eu, -in; no base-URL,
#     proxy or endpoint option), so this script runs in a private mount
#     namespace (unshare --mount, root) whose /etc/hosts maps api.mixpanel.com
#     to 127.0.0.1; node trusts the CA through NODE_EXTRA_CA_CERTS. It
#     authenticates as the emulator's service account (--acct/--pass/
#     --project, Basic auth and project_id), reads the local file and sends
#     it: once with the CLI's defaults (10 workers, 2000 events a request,
#     no gzip, strict), once with gzip as cebulk sends (--compress; cebulk
#     also runs 10 requests at a time);
#   - cebulk: the file is put into moto S3 first (not timed), the secret
#     (CE_SECRET_ID) holds the service account, project id and token, and
#     `cebulk import` runs the ImportFunction's pipeline with
#     BACKEND=mixpanel and MIXPANEL_BASE_URL=https://api.mixpanel.com (the
#     same name, address and certificate as the peer; Go trusts the CA
#     through SSL_CERT_FILE). Its time is the whole command: start, secret,
#     S3 HEAD and ranged GETs of the object from moto, validation and
#     normalisation, sending, the ledger and the reports written to moto.
#
# Each rate is the events the emulator counted as accepted divided by the
# client process's wall time (exec to exit); peak memory is its maximum
# resident set (/usr/bin/time -v). The emulator and moto share the machine's
# cores with the client being measured, as in the other benchmarks here.
#
# Needs root (unshare, the bind mount, port 443), Go, node >= 20.18, npm,
# openssl, /usr/bin/time, the aws CLI and moto (scripts/with-stack.sh, which
# this script starts itself).
#
# Knobs for trying the script (the table then is not the benchmark's):
# CEBULK_SEND_PEER=0 skips the peer runs, CEBULK_SEND_OURS=0 the cebulk
# run, CEBULK_SEND_FILE=<events.jsonl> sends another file, and
# CEBULK_SEND_OURS_ENV="VAR=value ..." runs cebulk import with more
# environment (GOGC=50, IMPORT_CHUNK_RECORDS=...).
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
self="$here/$(basename "$0")"
data=${CEBULK_BENCH_DIR:-$here/.data}
peer_version=3.1.43
records=1000000
file=$data/activities-$records.jsonl
if [ -n "${CEBULK_SEND_FILE:-}" ]; then file=$(cd "$(dirname "$CEBULK_SEND_FILE")" && pwd)/$(basename "$CEBULK_SEND_FILE"); fi
port=443

# 1. The local AWS stack (moto), then a private mount namespace.
if [ -z "${CEBULK_STACK:-}" ]; then
  exec "$root/scripts/with-stack.sh" "$self" "$@"
fi
if [ -z "${CEBULK_SEND_NS:-}" ]; then
  if [ "$(id -u)" != 0 ]; then echo "send.sh: needs root (unshare --mount, a bind mount over /etc/hosts, port 443)" >&2; exit 2; fi
  exec env CEBULK_SEND_NS=1 unshare --mount "$self" "$@"
fi

mkdir -p "$data/bin" "$data/tls" "$here/.peer"
cli="$here/.peer/node_modules/mixpanel-import/index.js"
if [ ! -f "$cli" ]; then
  echo "send.sh: installing mixpanel-import@$peer_version into $here/.peer" >&2
  npm install --prefix "$here/.peer" --no-audit --no-fund --loglevel=error "mixpanel-import@$peer_version" >&2
fi
if [ ! -f "$file" ]; then
  echo "== generating $file (BenchmarkValidate)" >&2
  (cd "$root" && CEBULK_BENCH_DIR="$data" go test -count=1 -run '^$' -bench 'BenchmarkValidate/activities/jsonl' -benchtime 1x ./internal/importer/) >&2
fi
(cd "$root" && go build -o "$data/bin/cebulk" ./cmd/cebulk)
cebulk=$data/bin/cebulk

# 2. A CA and a certificate for api.mixpanel.com (and 127.0.0.1).
tls=$data/tls
if [ ! -f "$tls/server.pem" ] || ! openssl x509 -checkend 3600 -noout -in "$tls/server.pem" >/dev/null; then
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 -subj "/CN=cebulk bench CA" \
    -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign" \
    -keyout "$tls/ca.key" -out "$tls/ca.pem" 2>/dev/null
  openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/CN=api.mixpanel.com" \
    -keyout "$tls/server.key" -out "$tls/server.csr" 2>/dev/null
  printf 'subjectAltName=DNS:api.mixpanel.com,IP:127.0.0.1\nextendedKeyUsage=serverAuth\nkeyUsage=critical,digitalSignature\n' > "$tls/ext.cnf"
  openssl x509 -req -in "$tls/server.csr" -CA "$tls/ca.pem" -CAkey "$tls/ca.key" -CAcreateserial -days 2 \
    -extfile "$tls/ext.cnf" -out "$tls/server.pem" 2>/dev/null
fi

# 3. api.mixpanel.com is 127.0.0.1, in this namespace only.
printf '127.0.0.1 localhost\n127.0.0.1 api.mixpanel.com\n' > "$data/hosts"
mount --bind "$data/hosts" /etc/hosts
if (exec 3<>/dev/tcp/127.0.0.1/$port) 2>/dev/null; then
  echo "send.sh: something already listens on 127.0.0.1:$port" >&2; exit 2
fi

user=$(sed -n 's/.*DefaultUsername *= *"\(.*\)"/\1/p' "$root/internal/mptest/fake.go")
pass=$(sed -n 's/.*DefaultSecret *= *"\(.*\)"/\1/p' "$root/internal/mptest/fake.go")
project=$(sed -n 's/.*DefaultProjectID *= *"\(.*\)"/\1/p' "$root/internal/mptest/fake.go")
token=$(sed -n 's/.*DefaultToken *= *"\(.*\)"/\1/p' "$root/internal/mptest/fake.go")

emu_pid=
cleanup() { if [ -n "$emu_pid" ]; then kill "$emu_pid" 2>/dev/null || true; fi; }
trap cleanup EXIT

# start_emulator LOG: a fresh emulator, discarding imports, until the
# banner is printed.
start_emulator() {
  "$cebulk" emulator -api mixpanel -addr "127.0.0.1:$port" -events 0 -users 0 -mp-discard-imports \
    -tls-cert "$tls/server.pem" -tls-key "$tls/server.key" >"$1" 2>&1 &
  emu_pid=$!
  for _ in $(seq 1 100); do
    if grep -q '^Stop with' "$1"; then return 0; fi
    if ! kill -0 "$emu_pid" 2>/dev/null; then echo "send.sh: the emulator exited:" >&2; cat "$1" >&2; exit 2; fi
    sleep 0.1
  done
  echo "send.sh: the emulator did not start" >&2; exit 2
}

# stop_emulator LOG: stops it; sets emu_accepted to the events it accepted
# and emu_cpu to the CPU seconds it used (user + system).
stop_emulator() {
  local ticks
  ticks=$(awk '{ print $14 + $15 }' "/proc/$emu_pid/stat")
  kill -INT "$emu_pid"
  wait "$emu_pid" || true
  emu_pid=
  emu_accepted=$(sed -n 's/^cebulk emulator: \/import accepted \([0-9]*\) events.*/\1/p' "$1")
  emu_cpu=$(echo "$ticks / $(getconf CLK_TCK)" | bc -l)
}

# measure NAME LOG CMD...: runs CMD against a fresh emulator under
# /usr/bin/time -v; appends a row to the table.
table=$data/send-compare.txt
measure() {
  local name=$1 log=$2; shift 2
  start_emulator "$log.emulator"
  echo "== $name" >&2
  local start end rc=0
  start=$(date +%s.%N)
  /usr/bin/time -v "$@" >"$log" 2>&1 &
  local timer=$! child= hwm=0 kb
  # The client's own high-water mark (VmHWM), sampled, as a check of
  # time's figure.
  while kill -0 "$timer" 2>/dev/null; do
    [ -n "$child" ] || child=$(pgrep -P "$timer" | head -1)
    if [ -n "$child" ]; then
      kb=$(sed -n 's/^VmHWM:[[:space:]]*\([0-9]*\) kB/\1/p' "/proc/$child/status" 2>/dev/null || true)
      if [ -n "$kb" ] && [ "$kb" -gt "$hwm" ]; then hwm=$kb; fi
    fi
    sleep 0.2
  done
  wait "$timer" || rc=$?
  end=$(date +%s.%N)
  local accepted secs rss cpu
  stop_emulator "$log.emulator"
  accepted=$emu_accepted
  secs=$(echo "$end - $start" | bc -l)
  rss=$(sed -n 's/.*Maximum resident set size (kbytes): //p' "$log")
  cpu=$(awk -F': ' '/User time|System time/ { s += $2 } END { print s }' "$log")
  if [ "$rc" != 0 ]; then echo "send.sh: $name exited with $rc; see $log" >&2; tail -20 "$log" >&2; fi
  printf '%-44s %9s %8.1f %9.0f %9.1f MiB %9.1f MiB %8.1f %8.1f\n' "$name" "${accepted:-0}" "$secs" "$(echo "${accepted:-0} / $secs" | bc -l)" \
    "$(echo "${rss:-0} / 1024" | bc -l)" "$(echo "$hwm / 1024" | bc -l)" "${cpu:-0}" "${emu_cpu:-0}" >> "$table"
  printf '%s\t%s\t%s\t%s\n' "$name" "${accepted:-0}" "$secs" "${rss:-0}" >> "$table.raw"
}

{
  echo "# $(date -u +%FT%TZ), $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg); $(basename "$file"): $(wc -l < "$file") events, $(stat -c %s "$file") bytes"
  printf '%-44s %9s %8s %9s %13s %13s %8s %8s\n' client accepted seconds events/s "peak RSS" "VmHWM seen" "CPU s" "emu CPU"
} > "$table"
: > "$table.raw"

# 4. The peer.
if [ "${CEBULK_SEND_PEER:-1}" != 0 ]; then
  peer=(node "$cli" "$file" --acct "$user" --pass "$pass" --project "$project" --type event --format jsonl
    --verbose false --logs false --where "$data")
  NODE_EXTRA_CA_CERTS=$tls/ca.pem measure "mixpanel-import (CLI defaults: 10 workers)" "$data/send-peer-default.log" "${peer[@]}"
  NODE_EXTRA_CA_CERTS=$tls/ca.pem measure "mixpanel-import (10 workers, --compress)" "$data/send-peer-gzip.log" "${peer[@]}" --compress
fi

# 5. cebulk: the file into moto S3 (not timed), then the import.
if [ "${CEBULK_SEND_OURS:-1}" != 0 ]; then
  bucket=cebulk-send-bench
  key=imports/activities/send-$(date +%s).jsonl
  aws s3api create-bucket --bucket "$bucket" >/dev/null 2>&1 || true
  echo "== uploading $file to s3://$bucket/$key (not timed)" >&2
  aws s3 cp --quiet "$file" "s3://$bucket/$key"
  secret=$(printf '{"serviceAccountUser":"%s","serviceAccountSecret":"%s","projectId":"%s","projectToken":"%s"}' "$user" "$pass" "$project" "$token")
  secret_arn=$(aws secretsmanager create-secret --name "cebulk/send-bench-$(date +%s%N)" --secret-string "$secret" --query ARN --output text)
  BACKEND=mixpanel MIXPANEL_BASE_URL=https://api.mixpanel.com SSL_CERT_FILE=$tls/ca.pem \
    CE_BASE_URL=http://127.0.0.1:9/unused CE_SECRET_ID=$secret_arn DATA_BUCKET=$bucket \
    measure "cebulk import (BACKEND=mixpanel)${CEBULK_SEND_OURS_ENV:+ $CEBULK_SEND_OURS_ENV}" "$data/send-cebulk.log" env ${CEBULK_SEND_OURS_ENV:-} "$cebulk" import -poll 200ms -wait 10m "s3://$bucket/$key"
  grep -E '^(import|read through|status|reason)' "$data/send-cebulk.log" >&2 || true
fi

# 6. Ratios: cebulk against each peer run (rate and peak memory).
awk -F'\t' 'NR == FNR { if ($1 ~ /^cebulk/ && $3 > 0) { rate = $2 / $3; rss = $4 }; next }
  $1 ~ /^mixpanel-import/ && rate > 0 && $2 > 0 && $4 > 0 {
    printf "cebulk against %s: %.2fx its events/s at %.3fx its peak RSS\n", $1, rate / ($2 / $3), rss / $4
  }' "$table.raw" "$table.raw" >> "$table"
cat "$table"
