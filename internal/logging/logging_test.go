package logging

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestParseLevel(t *testing.T) {
	for in, want := range map[string]slog.Level{"": slog.LevelInfo, "debug": slog.LevelDebug, "WARN": slog.LevelWarn, "error": slog.LevelError} {
		got, err := ParseLevel(in)
		if err != nil || got != want {
			t.Errorf("ParseLevel(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	if _, err := ParseLevel("loud"); err == nil {
		t.Errorf("ParseLevel(loud) = nil error")
	}
}

func TestLevelFilter(t *testing.T) {
	var buf bytes.Buffer
	l := slog.New(&levelFilter{Handler: slog.NewJSONHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug}), min: slog.LevelWarn})
	l.Info("hidden")
	l.With("a", 1).Warn("shown")
	if got := bytes.Count(buf.Bytes(), []byte("\n")); got != 1 {
		t.Errorf("lines logged = %d, want 1:\n%s", got, buf.String())
	}
}

func TestMetric(t *testing.T) {
	var buf bytes.Buffer
	if err := Metric(&buf, "export", "JobsFailed", 2, time.UnixMilli(1764115200000)); err != nil {
		t.Fatal(err)
	}
	var got map[string]any
	if err := json.Unmarshal(buf.Bytes(), &got); err != nil {
		t.Fatalf("EMF line is not JSON: %v", err)
	}
	want := map[string]any{
		"_aws": map[string]any{"Timestamp": float64(1764115200000), "CloudWatchMetrics": []any{map[string]any{
			"Namespace": "cebulk", "Dimensions": []any{[]any{"Function"}},
			"Metrics": []any{map[string]any{"Name": "JobsFailed", "Unit": "Count"}},
		}}},
		"Function": "export", "JobsFailed": float64(2),
		"level": "INFO", "timestamp": "2025-11-26T00:00:00Z",
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("EMF (-want +got):\n%s", diff)
	}
}

func TestMetrics(t *testing.T) {
	var buf bytes.Buffer
	err := Metrics(&buf, []Dimension{{"Function", "export"}, {"Object", "activities"}},
		[]Value{{Name: "WatermarkAgeHours", Unit: "None", Value: 3.5}, {Name: "BytesPublished", Unit: "Bytes", Value: 10}}, time.UnixMilli(1764115200000))
	if err != nil {
		t.Fatal(err)
	}
	var got map[string]any
	if err := json.Unmarshal(buf.Bytes(), &got); err != nil {
		t.Fatalf("EMF line is not JSON: %v", err)
	}
	want := map[string]any{
		"_aws": map[string]any{"Timestamp": float64(1764115200000), "CloudWatchMetrics": []any{map[string]any{
			"Namespace": "cebulk", "Dimensions": []any{[]any{"Function", "Object"}},
			"Metrics": []any{map[string]any{"Name": "WatermarkAgeHours", "Unit": "None"}, map[string]any{"Name": "BytesPublished", "Unit": "Bytes"}},
		}}},
		"Function": "export", "Object": "activities", "WatermarkAgeHours": 3.5, "BytesPublished": float64(10),
		"level": "INFO", "timestamp": "2025-11-26T00:00:00Z",
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("EMF (-want +got):\n%s", diff)
	}
	if err := Metrics(nil, nil, []Value{{Name: "X", Unit: "Count", Value: 1}}, time.Now()); err != nil {
		t.Errorf("Metrics to a nil writer: %v", err)
	}
}

func TestMetricPassesLambdasLogLevelFilter(t *testing.T) {
	for _, appLevel := range []string{"DEBUG", "INFO", "WARN", "ERROR", "FATAL"} {
		t.Run(appLevel, func(t *testing.T) {
			var buf bytes.Buffer
			if err := metric(&buf, appLevel, "import", "JobsFailed", 1, time.Now()); err != nil {
				t.Fatal(err)
			}
			if !LambdaKeeps(buf.Bytes(), appLevel) {
				t.Errorf("ApplicationLogLevel %s drops the metric line %s", appLevel, buf.Bytes())
			}
			// Without level and timestamp (the old line), WARN and up dropped it.
			var doc map[string]any
			_ = json.Unmarshal(buf.Bytes(), &doc)
			delete(doc, "level")
			delete(doc, "timestamp")
			bare, _ := json.Marshal(doc)
			if want := appLevel == "DEBUG" || appLevel == "INFO"; LambdaKeeps(bare, appLevel) != want {
				t.Errorf("filter model: a line without level kept = %v at %s, want %v", !want, appLevel, want)
			}
		})
	}
	t.Setenv("AWS_LAMBDA_LOG_LEVEL", "WARN")
	var buf bytes.Buffer
	if err := Metric(&buf, "export", "JobsFailed", 1, time.Now()); err != nil {
		t.Fatal(err)
	}
	if !LambdaKeeps(buf.Bytes(), "WARN") {
		t.Errorf("Metric at AWS_LAMBDA_LOG_LEVEL=WARN wrote %s, which Lambda's filter drops", buf.Bytes())
	}
}
