// Package lambdalocal runs this repository's Lambda functions on one machine
// without Docker or an AWS account: each bootstrap binary is served by the
// AWS Lambda Runtime Interface Emulator (aws-lambda-rie), and two small
// stand-ins play the AWS services around them: InvokeAPI answers the Lambda
// Invoke API (synchronous and asynchronous "Event" invocations, the latter
// with Lambda's retries, event age and on-failure destination records; see
// AsyncConfig) and Gateway turns plain HTTP requests into API Gateway HTTP
// API (payload 2.0) events.
//
// The end-to-end tests (through internal/lambdatest) and `cebulk demo` use it.
package lambdalocal

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Options configure one emulated function.
type Options struct {
	Name    string        // AWS_LAMBDA_FUNCTION_NAME (default "function")
	Timeout time.Duration // the function timeout (default 60s)
	// Env is the bootstrap's whole environment besides the Lambda variables;
	// nil means this process's environment.
	Env []string
	// Output receives the emulator's and the function's output (default: discarded).
	Output io.Writer
}

// Function is one bootstrap served by its own emulator. The emulator handles
// one invocation at a time, so Invoke serialises calls.
type Function struct {
	Name string
	URL  string // the emulator's Invoke endpoint

	mu     sync.Mutex
	cmd    *exec.Cmd
	cancel context.CancelFunc
	done   chan struct{}
}

// Start serves bootstrap under the emulator rie on two free loopback ports
// and waits until it listens. Close stops it.
func Start(ctx context.Context, rie, bootstrap string, opts Options) (*Function, error) {
	if opts.Name == "" {
		opts.Name = "function"
	}
	if opts.Timeout == 0 {
		opts.Timeout = 60 * time.Second
	}
	if opts.Env == nil {
		opts.Env = os.Environ()
	}
	if opts.Output == nil {
		opts.Output = io.Discard
	}
	apiPort, err := FreePort()
	if err != nil {
		return nil, err
	}
	runtimePort, err := FreePort()
	if err != nil {
		return nil, err
	}
	cctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	cmd := exec.CommandContext(cctx, rie,
		"--runtime-interface-emulator-address", "127.0.0.1:"+apiPort,
		"--runtime-api-address", "127.0.0.1:"+runtimePort,
		bootstrap)
	cmd.Env = append(append([]string(nil), opts.Env...),
		"AWS_LAMBDA_FUNCTION_NAME="+opts.Name,
		"AWS_LAMBDA_FUNCTION_TIMEOUT="+strconv.Itoa(int(opts.Timeout/time.Second)),
	)
	cmd.Stdout, cmd.Stderr = opts.Output, opts.Output
	dieWithParent(cmd)
	if err := cmd.Start(); err != nil {
		cancel()
		return nil, fmt.Errorf("start aws-lambda-rie for %s: %v", opts.Name, err)
	}
	f := &Function{
		Name:   opts.Name,
		URL:    "http://127.0.0.1:" + apiPort + "/2015-03-31/functions/function/invocations",
		cmd:    cmd,
		cancel: cancel,
		done:   make(chan struct{}),
	}
	go func() { _ = cmd.Wait(); close(f.done) }()
	deadline := time.Now().Add(15 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", "127.0.0.1:"+apiPort, 200*time.Millisecond)
		if err == nil {
			c.Close()
			return f, nil
		}
		select {
		case <-f.done:
			cancel()
			return nil, fmt.Errorf("aws-lambda-rie for %s exited before listening", opts.Name)
		default:
		}
		if time.Now().After(deadline) {
			f.Close()
			return nil, fmt.Errorf("aws-lambda-rie for %s did not listen on port %s: %v", opts.Name, apiPort, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// PID returns the emulator's process id (the bootstrap runs as its child).
func (f *Function) PID() int { return f.cmd.Process.Pid }

// Close stops the emulator and waits for it.
func (f *Function) Close() {
	f.cancel()
	<-f.done
}

// Result is what one invocation returned.
type Result struct {
	Payload []byte       // the handler's response, or the error document
	Error   *InvokeError // set when the handler returned an error, panicked or timed out
}

// InvokeError is the error document Lambda returns for a failed invocation.
type InvokeError struct {
	Message string `json:"errorMessage"`
	Type    string `json:"errorType"`
}

func (e *InvokeError) Error() string { return e.Type + ": " + e.Message }

// Invoke sends payload to the function and waits for its answer.
func (f *Function) Invoke(ctx context.Context, payload []byte) (Result, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, f.URL, bytes.NewReader(payload))
	if err != nil {
		return Result{}, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return Result{}, fmt.Errorf("invoke %s: %w", f.Name, err)
	}
	defer resp.Body.Close()
	out, err := io.ReadAll(resp.Body)
	if err != nil {
		return Result{}, fmt.Errorf("read %s's answer: %w", f.Name, err)
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

func isErrorDocument(b []byte) bool {
	var d struct {
		Message *string `json:"errorMessage"`
		Type    *string `json:"errorType"`
	}
	return json.Unmarshal(b, &d) == nil && d.Message != nil && d.Type != nil
}

// FreePort returns a free TCP port on 127.0.0.1.
func FreePort() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", fmt.Errorf("find a free port: %v", err)
	}
	defer l.Close()
	return strconv.Itoa(l.Addr().(*net.TCPAddr).Port), nil
}

// ErrUnknownFunction is returned for an invocation of a function InvokeAPI
// does not serve.
var ErrUnknownFunction = errors.New("lambdalocal: unknown function")
