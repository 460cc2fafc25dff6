# cebulk: one entry point for building, testing, benchmarking and the demo.
# `sam build` calls the build-<LogicalId> targets with ARTIFACTS_DIR set.

GO        ?= go
GOARCH_LAMBDA ?= arm64
LDFLAGS   := -s -w
BUILD_LAMBDA = CGO_ENABLED=0 GOOS=linux GOARCH=$(GOARCH_LAMBDA) $(GO) build -trimpath -tags lambda.norpc -ldflags='$(LDFLAGS)'

.PHONY: all test test-short lint vet fmt staticcheck bench demo emulator emulator-mixpanel build iam-simulate \
        build-ExportFunction build-ImportFunction build-WebhookFunction \
        invoke-export invoke-import invoke-webhook cfn-lint

all: lint test

## test: every test, with the local AWS stack (moto server + Lambda runtime emulator),
## each function's AWS requests authorised against its template role (internal/awsauthz),
## and the lake's SQL checks on DuckDB (make lake-engine).
test: iam-simulate lake-engine
	@scripts/with-stack.sh $(GO) test -race -count=1 -timeout 20m ./...

## test-short: unit tests only (no local stack; integration tests skip).
test-short:
	$(GO) test -count=1 ./...

## lint: formatting, vet and staticcheck (a go.mod tool dependency); the template is checked by make test.
lint: fmt vet staticcheck

staticcheck:
	$(GO) tool staticcheck ./...

fmt:
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needs to run on:"; echo "$$out"; exit 1; fi

vet:
	$(GO) vet ./...

## bench: throughput and memory benchmarks (export, import, validation) with the local stack.
bench: iam-simulate
	@scripts/with-stack.sh $(GO) test -run '^$$' -bench . -benchmem -benchtime 1x -timeout 60m ./...

## demo: the whole flow on this machine (no cloud account): export, callback, import; files land in demo-out/.
demo: iam-simulate lake-engine
	$(GO) run ./cmd/cebulk demo -out demo-out

## emulator: serve the CE emulator on 127.0.0.1:8090 with sample data.
emulator:
	$(GO) run ./cmd/cebulk emulator -addr 127.0.0.1:8090

## emulator-mixpanel: serve the Mixpanel API emulator on 127.0.0.1:8091 with sample data.
emulator-mixpanel:
	$(GO) run ./cmd/cebulk emulator -api mixpanel -addr 127.0.0.1:8091

## build-<LogicalId>: the static arm64 bootstraps `sam build` packages.
build-ExportFunction:
	$(BUILD_LAMBDA) -o $(ARTIFACTS_DIR)/bootstrap ./functions/export

build-ImportFunction:
	$(BUILD_LAMBDA) -o $(ARTIFACTS_DIR)/bootstrap ./functions/import

build-WebhookFunction:
	$(BUILD_LAMBDA) -o $(ARTIFACTS_DIR)/bootstrap ./functions/webhook

# ---- samtemplate: template lint and local builds ---------------------------
# (appended block; the checks themselves are Go tests in internal/samtemplate)
.PHONY: cfn-lint build-all

## cfn-lint: lint template.yaml (applies the SAM transform locally, offline).
cfn-lint:
	@command -v cfn-lint >/dev/null 2>&1 || { echo "cfn-lint not found on PATH: pip install cfn-lint" >&2; exit 2; }
	cfn-lint template.yaml

## build-all: the three bootstraps as `sam build` makes them, into bin/<fn>/bootstrap.
build-all:
	$(MAKE) --no-print-directory build-ExportFunction ARTIFACTS_DIR=$(CURDIR)/bin/export
	$(MAKE) --no-print-directory build-ImportFunction ARTIFACTS_DIR=$(CURDIR)/bin/import
	$(MAKE) --no-print-directory build-WebhookFunction ARTIFACTS_DIR=$(CURDIR)/bin/webhook
# ---- end samtemplate --------------------------------------------------------

# ---- lake: the local SQL engine for the lake checks and the demo -----------
# DuckDB through its Node.js API (native bindings ship as npm packages), pinned
# to internal/lake.DuckDBVersion, installed into .tools/duckdb (git-ignored).
# Test-only: nothing here is deployed.
DUCKDB_NODE_API := 1.5.6-r.1
LAKE_ENGINE_STAMP := .tools/duckdb/.installed-$(DUCKDB_NODE_API)
.PHONY: lake-engine

## lake-engine: install DuckDB (@duckdb/node-api) for the lake's SQL checks and the demo's queries.
lake-engine: $(LAKE_ENGINE_STAMP)

$(LAKE_ENGINE_STAMP):
	@command -v npm >/dev/null 2>&1 || { echo "npm not found: install Node.js 20+ to run the lake's SQL checks" >&2; exit 2; }
	rm -rf .tools/duckdb && mkdir -p .tools/duckdb
	npm install --prefix .tools/duckdb --no-save --no-package-lock --no-audit --no-fund --loglevel=error @duckdb/node-api@$(DUCKDB_NODE_API)
	touch $@
# ---- end lake ---------------------------------------------------------------

# ---- awsauthz: the IAM policy evaluator (test-only npm tool) ----------------
# @cloud-copilot/iam-simulate is AGPL: installed into the git-ignored .tools/
# for the local stack only, never committed, never part of a bootstrap. The
# version and its dependencies are pinned by internal/awsauthz/npm's lock file.
IAM_SIMULATE_DIR   := .tools/iam-simulate
IAM_SIMULATE_STAMP := $(IAM_SIMULATE_DIR)/.installed

## iam-simulate: install the IAM evaluator the local stack's authorising proxy asks (npm ci, pinned).
iam-simulate: $(IAM_SIMULATE_STAMP)

$(IAM_SIMULATE_STAMP): internal/awsauthz/npm/package.json internal/awsauthz/npm/package-lock.json
	@command -v npm >/dev/null 2>&1 || { echo "npm not found: install Node.js 20+ (the IAM evaluator is a test-only npm tool)" >&2; exit 2; }
	@rm -rf $(IAM_SIMULATE_DIR) && mkdir -p $(IAM_SIMULATE_DIR)
	cp internal/awsauthz/npm/package.json internal/awsauthz/npm/package-lock.json $(IAM_SIMULATE_DIR)/
	cd $(IAM_SIMULATE_DIR) && npm ci --no-audit --no-fund --ignore-scripts --loglevel=error
	@touch $@
# ---- end awsauthz -----------------------------------------------------------
