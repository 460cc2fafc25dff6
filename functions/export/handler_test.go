package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"runtime/debug"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/cebulk/cebulk/internal/exporter"
)

var _ pipeline = (*exporter.Exporter)(nil)

func readTestdata(t *testing.T, name string) json.RawMessage {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestParseEvent(t *testing.T) {
	for _, tc := range []struct {
		file string
		want request
	}{
		{"schedule-event.json", request{Action: "run", Run: exporter.RunRequest{At: time.Date(2026, 11, 26, 2, 0, 0, 0, time.UTC)}}},
		{"run.json", request{Action: "run"}},
		{"backfill.json", request{Action: "run", Run: exporter.RunRequest{Objects: []string{"activities"}, From: "2026-11-01", To: "2026-11-04"}}},
		{"collect.json", request{Action: "collect", JobID: "export-activities-2026-11-25"}},
		{"sweep.json", request{Action: "sweep"}},
	} {
		t.Run(tc.file, func(t *testing.T) {
			got, err := parseEvent(readTestdata(t, tc.file))
			if err != nil {
				t.Fatalf("parseEvent: %v", err)
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("parseEvent (-want +got):\n%s", diff)
			}
		})
	}
}

func TestParseEventRefuses(t *testing.T) {
	for _, in := range []string{
		``,
		`[]`,
		`"run"`,
		`{"action":"run"`,
		`{}`,
		`{"action":"export"}`,
		`{"action":"collect"}`,
		`{"action":"run","from":3}`,
		`{"detail-type":"Object Created","source":"aws.s3","time":"2026-11-26T02:00:00Z"}`,
	} {
		if got, err := parseEvent(json.RawMessage(in)); err == nil {
			t.Errorf("parseEvent(%s) = %+v, want an error", in, got)
		}
	}
}

// fakePipeline records calls; its fields give the answers.
type fakePipeline struct {
	calls   []string
	runReq  exporter.RunRequest
	runErr  error
	collect exporter.CollectResult
	err     error
}

func (f *fakePipeline) Run(_ context.Context, req exporter.RunRequest) (exporter.RunResult, error) {
	f.calls, f.runReq = append(f.calls, "run"), req
	return exporter.RunResult{Started: []exporter.StartedJob{{JobID: "export-activities-2026-11-25"}}}, f.runErr
}

func (f *fakePipeline) Collect(_ context.Context, id string) (exporter.CollectResult, error) {
	f.calls = append(f.calls, "collect "+id)
	return f.collect, f.err
}

func (f *fakePipeline) Sweep(context.Context) (exporter.SweepResult, error) {
	f.calls = append(f.calls, "sweep")
	return exporter.SweepResult{Checked: 2}, f.err
}

func TestHandle(t *testing.T) {
	errBoom := errors.New("boom")
	for _, tc := range []struct {
		name      string
		file      string
		fake      *fakePipeline
		wantCalls []string
		wantJSON  string
		wantErr   error
	}{
		{name: "schedule", file: "schedule-event.json", fake: &fakePipeline{}, wantCalls: []string{"run"},
			wantJSON: `{"action":"run","run":{"started":[{"jobId":"export-activities-2026-11-25","object":"","partition":"","from":"0001-01-01T00:00:00Z","to":"0001-01-01T00:00:00Z"}]}}`},
		{name: "collect", file: "collect.json", fake: &fakePipeline{collect: exporter.CollectResult{JobID: "export-activities-2026-11-25", Outcome: exporter.OutcomeCollected, Records: 7}},
			wantCalls: []string{"collect export-activities-2026-11-25"},
			wantJSON:  `{"action":"collect","collect":{"jobId":"export-activities-2026-11-25","outcome":"collected","records":7}}`},
		{name: "sweep", file: "sweep.json", fake: &fakePipeline{}, wantCalls: []string{"sweep"}, wantJSON: `{"action":"sweep","sweep":{"checked":2}}`},
		{name: "failed collect is an error, for Lambda's retry", file: "collect.json", fake: &fakePipeline{err: errBoom},
			wantCalls: []string{"collect export-activities-2026-11-25"}, wantErr: errBoom},
		{name: "failed run", file: "run.json", fake: &fakePipeline{runErr: errBoom}, wantCalls: []string{"run"}, wantErr: errBoom},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var logs bytes.Buffer
			h := &handler{ex: tc.fake, log: slog.New(slog.NewJSONHandler(&logs, nil))}
			got, err := h.handle(t.Context(), readTestdata(t, tc.file))
			if !errors.Is(err, tc.wantErr) {
				t.Fatalf("handle error = %v, want %v", err, tc.wantErr)
			}
			if diff := cmp.Diff(tc.wantCalls, tc.fake.calls); diff != "" {
				t.Errorf("calls (-want +got):\n%s", diff)
			}
			if tc.wantErr != nil {
				if got != nil {
					t.Errorf("handle = %v with an error, want nil", got)
				}
				if n := bytes.Count(logs.Bytes(), []byte(`"level":"ERROR"`)); n != 1 {
					t.Errorf("error logged %d times, want once:\n%s", n, logs.String())
				}
				return
			}
			b, _ := json.Marshal(got)
			if diff := cmp.Diff(tc.wantJSON, string(b)); diff != "" {
				t.Errorf("handle result (-want +got):\n%s", diff)
			}
		})
	}
	t.Run("incomplete collect is logged at warn", func(t *testing.T) {
		var logs bytes.Buffer
		f := &fakePipeline{collect: exporter.CollectResult{Outcome: exporter.OutcomeIncomplete, CEFailed: 3}}
		h := &handler{ex: f, log: slog.New(slog.NewJSONHandler(&logs, nil))}
		if _, err := h.handle(t.Context(), readTestdata(t, "collect.json")); err != nil {
			t.Fatalf("handle: %v", err)
		}
		if !bytes.Contains(logs.Bytes(), []byte(`"level":"WARN"`)) {
			t.Errorf("logs = %s, want a WARN line", logs.String())
		}
	})
	t.Run("failed sweep is logged, not retried", func(t *testing.T) {
		var logs bytes.Buffer
		f := &fakePipeline{err: errBoom}
		h := &handler{ex: f, log: slog.New(slog.NewJSONHandler(&logs, nil))}
		if _, err := h.handle(t.Context(), readTestdata(t, "sweep.json")); err != nil {
			t.Errorf("handle(sweep) = %v, want no error: the next sweep is its retry", err)
		}
		if !bytes.Contains(logs.Bytes(), []byte(`"level":"ERROR"`)) || !bytes.Contains(logs.Bytes(), []byte("boom")) {
			t.Errorf("logs = %s, want the sweep's error at ERROR", logs.String())
		}
	})
	t.Run("unknown action", func(t *testing.T) {
		f := &fakePipeline{}
		h := &handler{ex: f, log: slog.New(slog.DiscardHandler)}
		if _, err := h.handle(t.Context(), json.RawMessage(`{"action":"delete"}`)); err == nil {
			t.Error("handle(unknown action) = nil error")
		}
		if len(f.calls) != 0 {
			t.Errorf("calls = %v, want none", f.calls)
		}
	})
}

func TestTuneGC(t *testing.T) {
	prev := debug.SetGCPercent(100)
	t.Cleanup(func() { debug.SetGCPercent(prev) })
	for _, tc := range []struct {
		name string
		gogc string
		want int
	}{
		{"default", "", collectGCPercent},
		{"GOGC set: the runtime's setting stays", "100", 100},
	} {
		t.Run(tc.name, func(t *testing.T) {
			debug.SetGCPercent(100)
			tuneGC(tc.gogc)
			if got := debug.SetGCPercent(100); got != tc.want {
				t.Errorf("GC percent = %d, want %d", got, tc.want)
			}
		})
	}
}
