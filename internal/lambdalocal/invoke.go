package lambdalocal

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"time"
)

// Invoker is one function InvokeAPI can call.
type Invoker interface {
	Invoke(ctx context.Context, payload []byte) (Result, error)
}

// AsyncRecord is the outcome of one attempt of an asynchronous invocation.
type AsyncRecord struct {
	Function  string
	RequestID string // the same for every attempt of one event
	Attempt   int    // 1 for the first invocation, 2 and 3 for Lambda's retries
	Payload   []byte
	Result    Result
	Err       error
}

// Failed reports whether the attempt ended in a function error.
func (r AsyncRecord) Failed() bool { return r.Err != nil || r.Result.Error != nil }

// AsyncConfig is a function's asynchronous invocation configuration, as
// EventInvokeConfig sets it on AWS (see [DefaultAsyncConfig]).
type AsyncConfig struct {
	// MaximumRetryAttempts is how many times a function error is retried
	// (0, 1 or 2).
	MaximumRetryAttempts int
	// MaximumEventAge is how long an event may wait (queued, or between
	// retries) before it is discarded to the on-failure destination.
	MaximumEventAge time.Duration
	// RetryDelays are the waits before the first and the second retry
	// (Lambda: 1 and 2 minutes). Tests shorten them.
	RetryDelays [2]time.Duration
	// OnFailure receives the invocation record of an event whose retries
	// are exhausted or which grew too old; nil keeps it only in
	// [InvokeAPI.Destined] and the log.
	OnFailure Destination
}

// DefaultAsyncConfig is Lambda's behaviour, and template.yaml's
// EventInvokeConfig: two retries, 1 and 2 minutes after the failure, and
// events kept up to 6 hours.
func DefaultAsyncConfig() AsyncConfig {
	return AsyncConfig{
		MaximumRetryAttempts: 2,
		MaximumEventAge:      6 * time.Hour,
		RetryDelays:          [2]time.Duration{time.Minute, 2 * time.Minute},
	}
}

// Destination is an on-failure destination: it receives one invocation
// record (a JSON document, see [DestinationRecord]).
type Destination interface {
	Send(ctx context.Context, record []byte) error
}

// DestinationFunc adapts a function to [Destination].
type DestinationFunc func(ctx context.Context, record []byte) error

// Send calls f.
func (f DestinationFunc) Send(ctx context.Context, record []byte) error { return f(ctx, record) }

// Destination record conditions.
const (
	ConditionRetriesExhausted = "RetriesExhausted"
	ConditionEventAgeExceeded = "EventAgeExceeded"
)

// DestinationRecord is the invocation record Lambda sends to an on-failure
// destination of an asynchronous invocation.
type DestinationRecord struct {
	Version         string          `json:"version"`   // "1.0"
	Timestamp       string          `json:"timestamp"` // RFC 3339 UTC with milliseconds
	RequestContext  RequestContext  `json:"requestContext"`
	RequestPayload  json.RawMessage `json:"requestPayload"`
	ResponseContext ResponseContext `json:"responseContext"`
	ResponsePayload json.RawMessage `json:"responsePayload,omitempty"`
}

// RequestContext is a destination record's requestContext.
type RequestContext struct {
	RequestID              string `json:"requestId"`
	FunctionARN            string `json:"functionArn"` // ...:function:<name>:$LATEST
	Condition              string `json:"condition"`
	ApproximateInvokeCount int    `json:"approximateInvokeCount"`
}

// ResponseContext is a destination record's responseContext.
type ResponseContext struct {
	StatusCode      int    `json:"statusCode"`
	ExecutedVersion string `json:"executedVersion"`
	FunctionError   string `json:"functionError,omitempty"`
}

// InvokeAPI is a stand-in for the AWS Lambda Invoke API
// (POST /2015-03-31/functions/{name}/invocations). Point the SDK at it with
// AWS_ENDPOINT_URL_LAMBDA.
//
// Asynchronous invocations (X-Amz-Invocation-Type: Event) answer 202 at
// once and behave as Lambda's event queue does: each function has its own
// queue, served one invocation at a time (the runtime emulator runs one at
// a time), while different functions run concurrently. A function error
// (the handler returned an error, panicked or timed out) is retried with
// the same payload AsyncConfig.MaximumRetryAttempts times, after
// AsyncConfig.RetryDelays; a retry waits outside the queue, so it never
// holds back other events. After the last failure, or once the event is
// older than AsyncConfig.MaximumEventAge, the invocation record goes to the
// on-failure destination. Wait blocks until every event is settled.
type InvokeAPI struct {
	log *slog.Logger
	// Region and Account make the function ARNs of destination records
	// (defaults us-east-1, 123456789012). Set them before the first call.
	Region, Account string
	now             func() time.Time

	mu       sync.Mutex
	fns      map[string]*function
	records  []AsyncRecord
	destined []DestinationRecord
	pending  int
	idle     chan struct{} // closed while pending == 0
	closed   bool
}

// function is one registered function and its event queue.
type function struct {
	name    string
	fn      Invoker
	cfg     AsyncConfig
	queue   []*event
	running bool
}

// event is one accepted asynchronous invocation.
type event struct {
	fn        *function
	payload   []byte
	requestID string
	accepted  time.Time
	attempts  int // invocations so far
}

// NewInvokeAPI returns an InvokeAPI with no functions.
func NewInvokeAPI(log *slog.Logger) *InvokeAPI {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	idle := make(chan struct{})
	close(idle)
	return &InvokeAPI{log: log, Region: "us-east-1", Account: "123456789012", now: time.Now, fns: map[string]*function{}, idle: idle}
}

// Register makes fn callable under name (a function name; ARNs ending in
// ":function:<name>" match too), with [DefaultAsyncConfig].
func (a *InvokeAPI) Register(name string, fn Invoker) {
	a.RegisterAsync(name, fn, DefaultAsyncConfig())
}

// RegisterAsync makes fn callable under name with the asynchronous
// invocation configuration cfg. Zero RetryDelays or MaximumEventAge take
// the defaults; MaximumRetryAttempts is clamped to 0..2 as Lambda does.
func (a *InvokeAPI) RegisterAsync(name string, fn Invoker, cfg AsyncConfig) {
	def := DefaultAsyncConfig()
	cfg.MaximumRetryAttempts = min(max(cfg.MaximumRetryAttempts, 0), 2)
	if cfg.MaximumEventAge <= 0 {
		cfg.MaximumEventAge = def.MaximumEventAge
	}
	for i, d := range cfg.RetryDelays {
		if d <= 0 {
			cfg.RetryDelays[i] = def.RetryDelays[i]
		}
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	a.fns[name] = &function{name: name, fn: fn, cfg: cfg}
}

// FunctionName returns the function name in a name or ARN (qualifier
// dropped).
func FunctionName(nameOrARN string) string {
	name := nameOrARN
	if i := strings.LastIndex(nameOrARN, ":function:"); i >= 0 {
		name = nameOrARN[i+len(":function:"):]
		if j := strings.IndexByte(name, ':'); j >= 0 {
			name = name[:j] // qualifier
		}
	}
	return name
}

func (a *InvokeAPI) lookup(nameOrARN string) (*function, string, bool) {
	name := FunctionName(nameOrARN)
	a.mu.Lock()
	defer a.mu.Unlock()
	f, ok := a.fns[name]
	return f, name, ok
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
	// Lambda's limits: 256 KiB for an asynchronous payload, 6 MB otherwise.
	limit := int64(6 << 20)
	async := r.Header.Get("X-Amz-Invocation-Type") == "Event"
	if async {
		limit = 256 << 10
	}
	payload, err := io.ReadAll(io.LimitReader(r.Body, limit+1))
	if err != nil {
		writeAWSError(w, http.StatusBadRequest, "InvalidRequestContentException", "cannot read payload")
		return
	}
	if int64(len(payload)) > limit {
		writeAWSError(w, http.StatusRequestEntityTooLarge, "RequestEntityTooLargeException", fmt.Sprintf("Request must be smaller than %d bytes for the %s operation", limit, "Invoke"))
		return
	}
	switch {
	case async:
		ev := &event{fn: fn, payload: payload, requestID: newRequestID(), accepted: a.now()}
		if !a.accept(ev) {
			writeAWSError(w, http.StatusServiceUnavailable, "ServiceException", "closed")
			return
		}
		w.Header().Set("X-Amzn-RequestId", ev.requestID)
		w.WriteHeader(http.StatusAccepted)
	case r.Header.Get("X-Amz-Invocation-Type") == "DryRun":
		w.WriteHeader(http.StatusNoContent)
	default:
		res, err := fn.fn.Invoke(r.Context(), payload)
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

// accept counts a new event as pending and queues it.
func (a *InvokeAPI) accept(ev *event) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.closed {
		return false
	}
	if a.pending == 0 {
		a.idle = make(chan struct{})
	}
	a.pending++
	a.enqueueLocked(ev)
	return true
}

// enqueueLocked appends ev to its function's queue and starts the
// function's runner if it is idle.
func (a *InvokeAPI) enqueueLocked(ev *event) {
	f := ev.fn
	f.queue = append(f.queue, ev)
	if !f.running {
		f.running = true
		go a.drain(f)
	}
}

// settle ends an event: it is no longer pending.
func (a *InvokeAPI) settleLocked() {
	a.pending--
	if a.pending == 0 {
		close(a.idle)
	}
}

// drain runs f's queued events one after another until the queue is empty.
func (a *InvokeAPI) drain(f *function) {
	for {
		a.mu.Lock()
		if len(f.queue) == 0 || a.closed {
			for range f.queue {
				a.settleLocked() // dropped by Close
			}
			f.queue, f.running = nil, false
			a.mu.Unlock()
			return
		}
		ev := f.queue[0]
		f.queue = f.queue[1:]
		a.mu.Unlock()
		a.run(ev)
	}
}

// run makes one attempt of ev and decides what comes next: done, a retry
// after its delay, or the on-failure destination.
func (a *InvokeAPI) run(ev *event) {
	f := ev.fn
	if age := a.now().Sub(ev.accepted); age > f.cfg.MaximumEventAge {
		a.destine(ev, ConditionEventAgeExceeded, nil)
		return
	}
	ev.attempts++
	res, err := f.fn.Invoke(context.Background(), ev.payload)
	rec := AsyncRecord{Function: f.name, RequestID: ev.requestID, Attempt: ev.attempts, Payload: ev.payload, Result: res, Err: err}
	a.mu.Lock()
	a.records = append(a.records, rec)
	a.mu.Unlock()
	log := a.log.With("function", f.name, "requestId", ev.requestID, "attempt", ev.attempts)
	if !rec.Failed() {
		log.Info("async invocation done")
		a.mu.Lock()
		a.settleLocked()
		a.mu.Unlock()
		return
	}
	errDoc := res.Payload
	if err != nil {
		log.Error("async invocation failed", "err", err)
		errDoc, _ = json.Marshal(InvokeError{Message: err.Error(), Type: "ServiceException"})
	} else {
		log.Warn("async invocation returned an error", "err", res.Error)
	}
	if ev.attempts > f.cfg.MaximumRetryAttempts {
		a.destine(ev, ConditionRetriesExhausted, errDoc)
		return
	}
	delay := f.cfg.RetryDelays[ev.attempts-1]
	log.Info("async invocation will be retried", "in", delay)
	time.AfterFunc(delay, func() {
		a.mu.Lock()
		defer a.mu.Unlock()
		if a.closed {
			a.settleLocked()
			return
		}
		a.enqueueLocked(ev)
	})
}

// destine sends ev's invocation record to its function's on-failure
// destination and settles it.
func (a *InvokeAPI) destine(ev *event, condition string, responsePayload []byte) {
	f := ev.fn
	rec := DestinationRecord{
		Version:   "1.0",
		Timestamp: a.now().UTC().Format("2006-01-02T15:04:05.000Z"),
		RequestContext: RequestContext{
			RequestID:              ev.requestID,
			FunctionARN:            fmt.Sprintf("arn:aws:lambda:%s:%s:function:%s:$LATEST", a.Region, a.Account, f.name),
			Condition:              condition,
			ApproximateInvokeCount: ev.attempts,
		},
		RequestPayload:  jsonOrString(ev.payload),
		ResponseContext: ResponseContext{StatusCode: http.StatusOK, ExecutedVersion: "$LATEST"},
	}
	if responsePayload != nil {
		rec.ResponseContext.FunctionError = "Unhandled"
		rec.ResponsePayload = jsonOrString(responsePayload)
	}
	log := a.log.With("function", f.name, "requestId", ev.requestID, "condition", condition, "invocations", ev.attempts)
	b, err := json.Marshal(rec)
	if err == nil && f.cfg.OnFailure != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		err = f.cfg.OnFailure.Send(ctx, b)
		cancel()
	}
	if err != nil {
		// Lambda counts this in DestinationDeliveryFailures and drops the event.
		log.Error("on-failure destination not reached; event dropped", "err", err)
	} else {
		log.Error("async event sent to the on-failure destination")
	}
	a.mu.Lock()
	a.destined = append(a.destined, rec)
	a.settleLocked()
	a.mu.Unlock()
}

// jsonOrString returns b when it is JSON, else b as a JSON string.
func jsonOrString(b []byte) json.RawMessage {
	if json.Valid(b) {
		return json.RawMessage(b)
	}
	s, _ := json.Marshal(string(b))
	return s
}

// newRequestID returns a random UUID (version 4), as Lambda's request ids.
func newRequestID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:])
}

// Wait blocks until every asynchronous invocation accepted so far (and any
// it caused, and their retries) has succeeded or reached its destination,
// or ctx ends.
func (a *InvokeAPI) Wait(ctx context.Context) error {
	for {
		a.mu.Lock()
		idle := a.idle
		a.mu.Unlock()
		select {
		case <-idle:
			a.mu.Lock()
			busy := a.pending > 0 // a new event came meanwhile
			a.mu.Unlock()
			if !busy {
				return nil
			}
		case <-ctx.Done():
			return fmt.Errorf("wait for async invocations: %w", ctx.Err())
		}
	}
}

// Records returns the attempts of the asynchronous invocations so far.
func (a *InvokeAPI) Records() []AsyncRecord {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]AsyncRecord(nil), a.records...)
}

// Destined returns the invocation records sent (or meant) to on-failure
// destinations so far.
func (a *InvokeAPI) Destined() []DestinationRecord {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]DestinationRecord(nil), a.destined...)
}

// Close stops the stand-in: queued invocations and pending retries are
// dropped (an invocation already running finishes).
func (a *InvokeAPI) Close() {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.closed = true
}

func writeAWSError(w http.ResponseWriter, status int, typ, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Amzn-ErrorType", typ)
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]string{"Type": "User", "message": msg})
}
