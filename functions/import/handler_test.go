package main

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"os"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/cebulk/cebulk/internal/importer"
)

// fakeImporter records the calls the handler makes.
type fakeImporter struct {
	mu    sync.Mutex
	calls []string
	err   error
}

func (f *fakeImporter) record(call string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, call)
}

func (f *fakeImporter) HandleObject(ctx context.Context, bucket, key, etag string, size int64, opts ...importer.RunOption) (importer.Result, error) {
	call := "object " + bucket + " " + key + " " + etag
	if len(opts) > 0 {
		call += " +opts"
	}
	f.record(call)
	return importer.Result{ImportID: "import-x", Status: importer.StatusSucceeded}, f.err
}

func (f *fakeImporter) Resume(ctx context.Context, id string, opts ...importer.RunOption) (importer.Result, error) {
	f.record("resume " + id)
	return importer.Result{ImportID: id, Status: importer.StatusSucceeded}, f.err
}

func (f *fakeImporter) Finalize(ctx context.Context, id string) (importer.Result, error) {
	f.record("finalize " + id)
	return importer.Result{ImportID: id, Status: importer.StatusWaiting}, f.err
}

func (f *fakeImporter) Sweep(ctx context.Context) (importer.SweepResult, error) {
	f.record("sweep")
	return importer.SweepResult{Checked: 1}, f.err
}

func fixture(t *testing.T, name string) json.RawMessage {
	t.Helper()
	b, err := os.ReadFile("testdata/" + name)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// motoEvent is an S3 event as moto writes it: eventTime without a zone,
// keys form-encoded.
const motoEvent = `{"Records":[{"eventVersion":"2.1","eventSource":"aws:s3","awsRegion":"us-east-1",
"eventTime":"2026-11-26T09:30:00.123456","eventName":"ObjectCreated:Put",
"s3":{"s3SchemaVersion":"1.0","configurationId":"c","bucket":{"name":"b","arn":"arn:aws:s3:::b"},
"object":{"key":"imports/users/a+b%2Bc.csv","size":10,"eTag":"\"0cc175b9c0f1b6a831c399e269772661\""}}}]}`

func TestHandle(t *testing.T) {
	tests := []struct {
		name      string
		payload   json.RawMessage
		wantCalls []string
		wantErr   bool
	}{
		{"S3 put event", fixture(t, "s3-put-event.json"), []string{"object cebulk-data-123456789012 imports/activities/2026/mixed rows(2).csv d41d8cd98f00b204e9800998ecf8427e"}, false},
		{"moto S3 event", json.RawMessage(motoEvent), []string{`object b imports/users/a b+c.csv "0cc175b9c0f1b6a831c399e269772661"`}, false},
		{"S3 event with maxChunks", json.RawMessage(strings.Replace(motoEvent, `{"Records"`, `{"maxChunks":1,"Records"`, 1)), []string{`object b imports/users/a b+c.csv "0cc175b9c0f1b6a831c399e269772661" +opts`}, false},
		{"removal ignored", json.RawMessage(strings.Replace(motoEvent, "ObjectCreated:Put", "ObjectRemoved:Delete", 1)), nil, false},
		{"resume", fixture(t, "resume.json"), []string{"resume import-0123456789abcdef"}, false},
		{"finalize", fixture(t, "finalize.json"), []string{"finalize import-0123456789abcdef-chunk-0001"}, false},
		{"sweep", fixture(t, "sweep.json"), []string{"sweep"}, false},
		{"scheduled event", json.RawMessage(`{"version":"0","id":"1","detail-type":"Scheduled Event","source":"aws.events","detail":{}}`), []string{"sweep"}, false},
		{"S3 test event", json.RawMessage(`{"Service":"Amazon S3","Event":"s3:TestEvent","Time":"2026-11-26T09:30:00.000Z","Bucket":"b"}`), nil, false},
		{"unknown action", json.RawMessage(`{"action":"collect","jobId":"x"}`), nil, true},
		{"resume without id", json.RawMessage(`{"action":"resume"}`), nil, true},
		{"not JSON", json.RawMessage(`nope`), nil, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := &fakeImporter{}
			h := &handler{imp: f, log: slog.New(slog.DiscardHandler)}
			_, err := h.handle(t.Context(), tc.payload)
			if (err != nil) != tc.wantErr {
				t.Errorf("handle error = %v, want error %v", err, tc.wantErr)
			}
			if diff := cmp.Diff(tc.wantCalls, f.calls); diff != "" {
				t.Errorf("calls (-want +got):\n%s", diff)
			}
		})
	}
}

func TestHandleReturnsImporterErrors(t *testing.T) {
	errBoom := errors.New("s3 is down")
	f := &fakeImporter{err: errBoom}
	h := &handler{imp: f, log: slog.New(slog.DiscardHandler)}
	if _, err := h.handle(t.Context(), fixture(t, "s3-put-event.json")); !errors.Is(err, errBoom) {
		t.Errorf("handle error = %v, want %v (so Lambda retries)", err, errBoom)
	}
}

func TestHandleSweepErrorIsNotRetried(t *testing.T) {
	f := &fakeImporter{err: errors.New("s3 is down")}
	h := &handler{imp: f, log: slog.New(slog.DiscardHandler)}
	if _, err := h.handle(t.Context(), fixture(t, "sweep.json")); err != nil {
		t.Errorf("handle(sweep) = %v, want no error: the next sweep is its retry, not Lambda's queue", err)
	}
}

// fakeInvoker records asynchronous invocations.
type fakeInvoker struct {
	function string
	payload  []byte
}

func (f *fakeInvoker) InvokeAsync(ctx context.Context, function string, payload []byte) error {
	f.function, f.payload = function, payload
	return nil
}

func TestSelfInvokerResumes(t *testing.T) {
	inv := &fakeInvoker{}
	s := selfInvoker{api: inv, name: "cebulk-import"}
	if err := s.resume(t.Context(), "import-0123456789abcdef"); err != nil {
		t.Fatal(err)
	}
	if inv.function != "cebulk-import" {
		t.Errorf("invoked %q, want cebulk-import", inv.function)
	}
	// The payload is the resume fixture, which the handler accepts.
	want := strings.TrimSpace(string(fixture(t, "resume.json")))
	if string(inv.payload) != want {
		t.Errorf("payload = %s, want %s", inv.payload, want)
	}
}
