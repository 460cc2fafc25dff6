#!/usr/bin/env bash
# with-stack.sh CMD...: runs CMD with the local AWS stack up.
#
# Starts moto server (S3, Secrets Manager, SQS) on 127.0.0.1, builds the Lambda
# Runtime Interface Emulator from the module's tool dependency, exports the
# variables the tests read, runs CMD and stops moto again whatever happens.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
state="$root/.stack"
mkdir -p "$state/bin"

if ! command -v moto_server >/dev/null 2>&1; then
  echo "with-stack: moto_server not found on PATH." >&2
  echo "with-stack: install it with: pip install 'moto[server]' (moto 5.x)" >&2
  exit 2
fi

# A free port, so a second run (or a developer's own moto) does not collide.
port=${MOTO_PORT:-$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()')}

moto_server -H 127.0.0.1 -p "$port" >"$state/moto.log" 2>&1 &
moto_pid=$!
cleanup() { kill "$moto_pid" 2>/dev/null || true; wait "$moto_pid" 2>/dev/null || true; }
trap cleanup EXIT INT TERM

for _ in $(seq 1 100); do
  if curl -fs "http://127.0.0.1:$port/moto-api/" >/dev/null 2>&1; then break; fi
  if ! kill -0 "$moto_pid" 2>/dev/null; then
    echo "with-stack: moto_server exited; its log ($state/moto.log):" >&2
    cat "$state/moto.log" >&2
    exit 2
  fi
  sleep 0.1
done
curl -fs "http://127.0.0.1:$port/moto-api/" >/dev/null || { echo "with-stack: moto_server did not answer on port $port" >&2; exit 2; }

# The IAM evaluator the authorising proxy asks (test-only npm tool, pinned; a no-op when installed).
make -C "$root" --no-print-directory -s iam-simulate

# The Lambda Runtime Interface Emulator, built from go.mod's tool directive.
(cd "$root" && go build -o "$state/bin/aws-lambda-rie" github.com/aws/aws-lambda-runtime-interface-emulator/cmd/aws-lambda-rie)

export AWS_ENDPOINT_URL="http://127.0.0.1:$port"
export AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test AWS_SESSION_TOKEN=
export AWS_REGION=us-east-1 AWS_DEFAULT_REGION=us-east-1
export AWS_EC2_METADATA_DISABLED=true
export CEBULK_RIE="$state/bin/aws-lambda-rie"
# Integration and end-to-end tests fail instead of skipping when this is set.
export CEBULK_STACK=1

# Each run reports its own unused IAM grants (internal/lambdatest writes them).
rm -f "$state"/iam/used-*.json "$state/iam/unused.txt"

echo "with-stack: moto on $AWS_ENDPOINT_URL (log: $state/moto.log), rie at $CEBULK_RIE" >&2
set +e
"$@"
rc=$?
set -e
if [ -s "$state/iam/unused.txt" ]; then
  n=$(grep -vc '^#' "$state/iam/unused.txt" || true)
  echo "with-stack: $n template.yaml grant(s) allowed no request of the tests that ran: $state/iam/unused.txt" >&2
fi
exit "$rc"
