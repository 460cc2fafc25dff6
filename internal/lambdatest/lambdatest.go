// Package lambdatest runs this repository's real Lambda functions in tests:
// it builds a function's bootstrap binary and serves it with the AWS Lambda
// Runtime Interface Emulator (aws-lambda-rie, a tool dependency in go.mod), so
// a test invokes the same binary that would be deployed, through the real
// Lambda runtime API.
package lambdatest

import (
	"context"
	"encoding/json"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/cebulk/cebulk/internal/awstest"
	"github.com/cebulk/cebulk/internal/lambdalocal"
	"github.com/cebulk/cebulk/internal/syncio"
)

var (
	buildMu  sync.Mutex
	built    = map[string]string{}
	buildDir string
)

// moduleRoot finds the directory holding go.mod, from the test's working
// directory upwards.
func moduleRoot(t testing.TB) string {
	t.Helper()
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatal("lambdatest: no go.mod above the working directory")
		}
		dir = parent
	}
}

// Build compiles the package pkg (an import path such as
// "github.com/cebulk/cebulk/functions/export" or a path relative to the module
// root such as "./functions/export") into a static bootstrap for this machine,
// with the tags used in production (lambda.norpc). Each package is built once
// per test binary.
func Build(t testing.TB, pkg string) string {
	t.Helper()
	buildMu.Lock()
	defer buildMu.Unlock()
	if p, ok := built[pkg]; ok {
		return p
	}
	if buildDir == "" {
		d, err := os.MkdirTemp("", "cebulk-bootstraps-")
		if err != nil {
			t.Fatal(err)
		}
		buildDir = d
	}
	out := filepath.Join(buildDir, strconv.Itoa(len(built)), "bootstrap")
	cmd := exec.Command("go", "build", "-trimpath", "-tags", "lambda.norpc", "-o", out, pkg)
	cmd.Dir = moduleRoot(t)
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build %s: %v\n%s", pkg, err, b)
	}
	built[pkg] = out
	return out
}

// RIE returns the path of the runtime interface emulator: $CEBULK_RIE (set by
// make test), else it is built from the tool dependency.
func RIE(t testing.TB) string {
	t.Helper()
	if p := os.Getenv("CEBULK_RIE"); p != "" {
		return p
	}
	return Build(t, "github.com/aws/aws-lambda-runtime-interface-emulator/cmd/aws-lambda-rie")
}

// Options configure one emulated function.
type Options struct {
	Name    string            // AWS_LAMBDA_FUNCTION_NAME (default "function")
	Timeout time.Duration     // the function timeout (default 60s)
	Env     map[string]string // extra environment for the bootstrap
}

// Function is one bootstrap served by its own emulator.
type Function struct {
	*lambdalocal.Function
	logs *syncio.Buffer
}

// Start serves bootstrap under the runtime interface emulator on loopback
// ports and stops it when the test ends. The test's environment (including
// AWS_ENDPOINT_URL for the local stack) reaches the bootstrap, with opts.Env
// on top.
func Start(t testing.TB, bootstrap string, opts Options) *Function {
	t.Helper()
	awstest.Endpoint(t) // end-to-end tests need the local stack
	env := os.Environ()
	for k, v := range opts.Env {
		env = append(env, k+"="+v)
	}
	logs := &syncio.Buffer{}
	fn, err := lambdalocal.Start(context.Background(), RIE(t), bootstrap, lambdalocal.Options{
		Name: opts.Name, Timeout: opts.Timeout, Env: env, Output: logs,
	})
	if err != nil {
		t.Fatalf("%v\n%s", err, logs.String())
	}
	t.Cleanup(func() {
		fn.Close()
		if t.Failed() {
			t.Logf("logs of %s:\n%s", fn.Name, logs.String())
		}
	})
	return &Function{Function: fn, logs: logs}
}

// Invoke sends payload (marshalled to JSON unless it is []byte or
// json.RawMessage) and waits for the function's answer.
func (f *Function) Invoke(ctx context.Context, payload any) (lambdalocal.Result, error) {
	var body []byte
	switch p := payload.(type) {
	case []byte:
		body = p
	case json.RawMessage:
		body = p
	default:
		b, err := json.Marshal(p)
		if err != nil {
			return lambdalocal.Result{}, err
		}
		body = b
	}
	return f.Function.Invoke(ctx, body)
}

// MustInvoke invokes and fails the test when the invocation or the handler
// fails.
func (f *Function) MustInvoke(t testing.TB, payload any) []byte {
	t.Helper()
	res, err := f.Invoke(t.Context(), payload)
	if err != nil {
		t.Fatalf("invoke: %v\nlogs:\n%s", err, f.Logs())
	}
	if res.Error != nil {
		t.Fatalf("handler failed: %v\nlogs:\n%s", res.Error, f.Logs())
	}
	return res.Payload
}

// Logs returns everything the emulator and the function wrote so far.
func (f *Function) Logs() string { return f.logs.String() }

// NewInvokeAPI serves a Lambda Invoke API stand-in for the test and returns
// it with its endpoint (for AWS_ENDPOINT_URL_LAMBDA).
func NewInvokeAPI(t testing.TB) (*lambdalocal.InvokeAPI, string) {
	t.Helper()
	api := lambdalocal.NewInvokeAPI(nil)
	srv := httptest.NewServer(api)
	t.Cleanup(func() { srv.Close(); api.Close() })
	return api, srv.URL
}
