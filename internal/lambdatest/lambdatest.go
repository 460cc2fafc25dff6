// Package lambdatest runs this repository's real Lambda functions in tests:
// it builds a function's bootstrap binary and serves it with the AWS Lambda
// Runtime Interface Emulator (aws-lambda-rie, a tool dependency in go.mod), so
// a test invokes the same binary that would be deployed, through the real
// Lambda runtime API.
package lambdatest

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cebulk/cebulk/internal/awstest"
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

// Function is one bootstrap served by its own emulator. The emulator handles
// one invocation at a time, so Invoke serialises calls.
type Function struct {
	URL  string // the Invoke endpoint
	mu   sync.Mutex
	logs *syncBuffer
}

// Start serves bootstrap under the runtime interface emulator on loopback
// ports and stops it when the test ends. The test's environment (including
// AWS_ENDPOINT_URL for the local stack) reaches the bootstrap.
func Start(t testing.TB, bootstrap string, opts Options) *Function {
	t.Helper()
	awstest.Endpoint(t) // end-to-end tests need the local stack
	if opts.Name == "" {
		opts.Name = "function"
	}
	if opts.Timeout == 0 {
		opts.Timeout = 60 * time.Second
	}
	apiPort, runtimePort := freePort(t), freePort(t)
	ctx, cancel := context.WithCancel(context.Background())
	cmd := exec.CommandContext(ctx, RIE(t),
		"--runtime-interface-emulator-address", "127.0.0.1:"+apiPort,
		"--runtime-api-address", "127.0.0.1:"+runtimePort,
		bootstrap)
	env := append(os.Environ(),
		"AWS_LAMBDA_FUNCTION_NAME="+opts.Name,
		"AWS_LAMBDA_FUNCTION_TIMEOUT="+strconv.Itoa(int(opts.Timeout/time.Second)),
	)
	for k, v := range opts.Env {
		env = append(env, k+"="+v)
	}
	cmd.Env = env
	logs := &syncBuffer{}
	cmd.Stdout, cmd.Stderr = logs, logs
	if err := cmd.Start(); err != nil {
		cancel()
		t.Fatalf("start aws-lambda-rie: %v", err)
	}
	t.Cleanup(func() {
		cancel()
		_ = cmd.Wait()
		if t.Failed() {
			t.Logf("logs of %s:\n%s", opts.Name, logs.String())
		}
	})
	f := &Function{URL: "http://127.0.0.1:" + apiPort + "/2015-03-31/functions/function/invocations", logs: logs}
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", "127.0.0.1:"+apiPort, 200*time.Millisecond)
		if err == nil {
			c.Close()
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("aws-lambda-rie did not listen on %s: %v\n%s", apiPort, err, logs.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	return f
}

// Result is what one invocation returned.
type Result struct {
	Payload []byte       // the handler's response (or the error document)
	Error   *InvokeError // set when the handler returned an error or panicked
}

// InvokeError is the error document Lambda returns for a failed invocation.
type InvokeError struct {
	Message string `json:"errorMessage"`
	Type    string `json:"errorType"`
}

func (e *InvokeError) Error() string { return e.Type + ": " + e.Message }

// Invoke sends payload (marshalled to JSON unless it is []byte or
// json.RawMessage) and waits for the function's answer.
func (f *Function) Invoke(ctx context.Context, payload any) (Result, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var body []byte
	switch p := payload.(type) {
	case []byte:
		body = p
	case json.RawMessage:
		body = p
	default:
		b, err := json.Marshal(p)
		if err != nil {
			return Result{}, err
		}
		body = b
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, f.URL, bytes.NewReader(body))
	if err != nil {
		return Result{}, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return Result{}, fmt.Errorf("invoke: %w", err)
	}
	defer resp.Body.Close()
	out, err := io.ReadAll(resp.Body)
	if err != nil {
		return Result{}, fmt.Errorf("read invoke response: %w", err)
	}
	res := Result{Payload: out}
	if resp.StatusCode != http.StatusOK || resp.Header.Get("X-Amz-Function-Error") != "" || isErrorDocument(out) {
		ie := &InvokeError{}
		if json.Unmarshal(out, ie) != nil || ie.Message == "" {
			ie.Message = strings.TrimSpace(string(out))
			ie.Type = "HTTP " + strconv.Itoa(resp.StatusCode)
		}
		res.Error = ie
	}
	return res, nil
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

func isErrorDocument(b []byte) bool {
	var d struct {
		Message *string `json:"errorMessage"`
		Type    *string `json:"errorType"`
	}
	return json.Unmarshal(b, &d) == nil && d.Message != nil && d.Type != nil
}

func freePort(t testing.TB) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return strconv.Itoa(l.Addr().(*net.TCPAddr).Port)
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
