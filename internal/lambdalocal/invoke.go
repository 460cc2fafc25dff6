package lambdalocal

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"sync"
)

// Invoker is one function InvokeAPI can call.
type Invoker interface {
	Invoke(ctx context.Context, payload []byte) (Result, error)
}

// AsyncRecord is the outcome of one asynchronous invocation.
type AsyncRecord struct {
	Function string
	Payload  []byte
	Result   Result
	Err      error
}

// InvokeAPI is a stand-in for the AWS Lambda Invoke API
// (POST /2015-03-31/functions/{name}/invocations). Point the SDK at it with
// AWS_ENDPOINT_URL_LAMBDA. Asynchronous invocations (X-Amz-Invocation-Type:
// Event) answer 202 at once and run one after another in the background, as
// Lambda's event queue would; Wait blocks until the queue is empty.
type InvokeAPI struct {
	log *slog.Logger

	mu      sync.Mutex
	fns     map[string]Invoker
	pending sync.WaitGroup
	queue   chan asyncCall
	records []AsyncRecord
	once    sync.Once
	closed  chan struct{}
}

type asyncCall struct {
	name    string
	payload []byte
}

// NewInvokeAPI returns an InvokeAPI with no functions.
func NewInvokeAPI(log *slog.Logger) *InvokeAPI {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	a := &InvokeAPI{log: log, fns: map[string]Invoker{}, queue: make(chan asyncCall, 1024), closed: make(chan struct{})}
	go a.loop()
	return a
}

// Register makes fn callable under name (a function name; ARNs ending in
// ":function:<name>" match too).
func (a *InvokeAPI) Register(name string, fn Invoker) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.fns[name] = fn
}

func (a *InvokeAPI) lookup(nameOrARN string) (Invoker, string, bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	name := nameOrARN
	if i := strings.LastIndex(nameOrARN, ":function:"); i >= 0 {
		name = nameOrARN[i+len(":function:"):]
		if j := strings.IndexByte(name, ':'); j >= 0 {
			name = name[:j] // qualifier
		}
	}
	fn, ok := a.fns[name]
	return fn, name, ok
}

// ServeHTTP implements the Invoke API.
func (a *InvokeAPI) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	rest, ok := strings.CutPrefix(r.URL.Path, "/2015-03-31/functions/")
	name, ok2 := strings.CutSuffix(rest, "/invocations")
	if r.Method != http.MethodPost || !ok || !ok2 {
		writeAWSError(w, http.StatusNotFound, "ResourceNotFoundException", "no such route")
		return
	}
	fn, name, found := a.lookup(name)
	if !found {
		writeAWSError(w, http.StatusNotFound, "ResourceNotFoundException", "Function not found: "+name)
		return
	}
	payload, err := io.ReadAll(io.LimitReader(r.Body, 6<<20))
	if err != nil {
		writeAWSError(w, http.StatusBadRequest, "InvalidRequestContentException", "cannot read payload")
		return
	}
	switch r.Header.Get("X-Amz-Invocation-Type") {
	case "Event":
		a.pending.Add(1)
		select {
		case a.queue <- asyncCall{name: name, payload: payload}:
		case <-a.closed:
			a.pending.Done()
			writeAWSError(w, http.StatusServiceUnavailable, "ServiceException", "closed")
			return
		}
		w.WriteHeader(http.StatusAccepted)
	case "DryRun":
		w.WriteHeader(http.StatusNoContent)
	default:
		res, err := fn.Invoke(r.Context(), payload)
		if err != nil {
			writeAWSError(w, http.StatusBadGateway, "ServiceException", err.Error())
			return
		}
		if res.Error != nil {
			w.Header().Set("X-Amz-Function-Error", "Unhandled")
		}
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(res.Payload)
	}
}

func (a *InvokeAPI) loop() {
	for {
		select {
		case c := <-a.queue:
			a.run(c)
		case <-a.closed:
			return
		}
	}
}

func (a *InvokeAPI) run(c asyncCall) {
	defer a.pending.Done()
	fn, _, _ := a.lookup(c.name)
	res, err := fn.Invoke(context.Background(), c.payload)
	rec := AsyncRecord{Function: c.name, Payload: c.payload, Result: res, Err: err}
	switch {
	case err != nil:
		a.log.Error("async invocation failed", "function", c.name, "err", err)
	case res.Error != nil:
		a.log.Warn("async invocation returned an error", "function", c.name, "err", res.Error)
	default:
		a.log.Info("async invocation done", "function", c.name)
	}
	a.mu.Lock()
	a.records = append(a.records, rec)
	a.mu.Unlock()
}

// Wait blocks until every asynchronous invocation accepted so far (and any it
// caused) has run, or ctx ends.
func (a *InvokeAPI) Wait(ctx context.Context) error {
	done := make(chan struct{})
	go func() { a.pending.Wait(); close(done) }()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("wait for async invocations: %w", ctx.Err())
	}
}

// Records returns the outcomes of the asynchronous invocations so far.
func (a *InvokeAPI) Records() []AsyncRecord {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]AsyncRecord(nil), a.records...)
}

// Close stops the background runner; queued invocations are dropped.
func (a *InvokeAPI) Close() { a.once.Do(func() { close(a.closed) }) }

func writeAWSError(w http.ResponseWriter, status int, typ, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Amzn-ErrorType", typ)
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]string{"Type": "User", "message": msg})
}
