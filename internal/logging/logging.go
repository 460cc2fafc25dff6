// Package logging builds the functions' slog logger: Lambda's structured
// handler (JSON with the request id when LoggingConfig.LogFormat is JSON,
// honouring AWS_LAMBDA_LOG_LEVEL) behind a level filter for LOG_LEVEL, and
// an EMF helper for CloudWatch metrics.
package logging

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/aws/aws-lambda-go/lambdacontext"
)

// ParseLevel reads a LOG_LEVEL value ("" is info).
func ParseLevel(s string) (slog.Level, error) {
	var l slog.Level
	if s == "" {
		return slog.LevelInfo, nil
	}
	if err := l.UnmarshalText([]byte(s)); err != nil {
		return 0, fmt.Errorf("LOG_LEVEL=%q: want debug, info, warn or error", s)
	}
	return l, nil
}

// New returns the Lambda logger filtered at min.
func New(min slog.Level) *slog.Logger {
	return slog.New(&levelFilter{Handler: lambdacontext.NewLogHandler(), min: min})
}

type levelFilter struct {
	slog.Handler
	min slog.Level
}

func (h *levelFilter) Enabled(ctx context.Context, l slog.Level) bool {
	return l >= h.min && h.Handler.Enabled(ctx, l)
}

func (h *levelFilter) WithAttrs(a []slog.Attr) slog.Handler {
	return &levelFilter{Handler: h.Handler.WithAttrs(a), min: h.min}
}

func (h *levelFilter) WithGroup(n string) slog.Handler {
	return &levelFilter{Handler: h.Handler.WithGroup(n), min: h.min}
}

// Metric writes one CloudWatch embedded-metric-format line to w (the
// function's stdout): namespace "cebulk", dimension Function, a Count metric.
// CloudWatch Logs turns it into a metric the template's alarms watch.
//
// With the JSON log format, Lambda's log-level filter (ApplicationLogLevel)
// reads each line's "level" and "timestamp": a line without a valid level,
// or without an RFC 3339 timestamp, counts as INFO and is dropped when the
// function logs at WARN or ERROR, and with it the metric. So the line
// carries a timestamp and, as its level, the function's own
// ApplicationLogLevel (AWS_LAMBDA_LOG_LEVEL, which Lambda sets; INFO when
// unset or lower): the filter always passes it, whatever the level.
func Metric(w io.Writer, function, name string, value int, now time.Time) error {
	return metric(w, os.Getenv("AWS_LAMBDA_LOG_LEVEL"), function, name, value, now)
}

// MetricLevel is the level a metric line carries when the function's
// ApplicationLogLevel is appLevel: the lowest level Lambda's filter keeps,
// and never below INFO.
func MetricLevel(appLevel string) string {
	switch l := strings.ToUpper(strings.TrimSpace(appLevel)); l {
	case "WARN", "ERROR", "FATAL":
		return l
	}
	return "INFO"
}

func metric(w io.Writer, appLevel, function, name string, value int, now time.Time) error {
	return metrics(w, appLevel, []Dimension{{"Function", function}}, []Value{{Name: name, Unit: "Count", Value: float64(value)}}, now)
}

// Dimension is one dimension of an EMF line.
type Dimension struct{ Name, Value string }

// Value is one metric of an EMF line; Unit is a CloudWatch unit (Count,
// Bytes, None, …).
type Value struct {
	Name, Unit string
	Value      float64
}

// Metrics writes one CloudWatch embedded-metric-format line to w, like
// Metric (the same level and timestamp for Lambda's filter): namespace
// "cebulk", the metrics in values, all with the dimensions dims (one
// dimension set). A nil w writes nothing.
func Metrics(w io.Writer, dims []Dimension, values []Value, now time.Time) error {
	return metrics(w, os.Getenv("AWS_LAMBDA_LOG_LEVEL"), dims, values, now)
}

func metrics(w io.Writer, appLevel string, dims []Dimension, values []Value, now time.Time) error {
	if w == nil || len(values) == 0 {
		return nil
	}
	names := make([]string, len(dims))
	doc := map[string]any{
		"level":     MetricLevel(appLevel),
		"timestamp": now.UTC().Format(time.RFC3339Nano),
	}
	for i, d := range dims {
		names[i] = d.Name
		doc[d.Name] = d.Value
	}
	defs := make([]any, len(values))
	for i, v := range values {
		defs[i] = map[string]string{"Name": v.Name, "Unit": v.Unit}
		doc[v.Name] = v.Value
	}
	doc["_aws"] = map[string]any{
		"Timestamp": now.UnixMilli(),
		"CloudWatchMetrics": []any{map[string]any{
			"Namespace":  "cebulk",
			"Dimensions": [][]string{names},
			"Metrics":    defs,
		}},
	}
	b, err := json.Marshal(doc)
	if err != nil {
		return err
	}
	_, err = w.Write(append(b, '\n'))
	return err
}

// LambdaKeeps reports whether Lambda's application log-level filter, set
// to appLevel, sends a line of a function with the JSON log format to
// CloudWatch Logs, by the rule AWS documents: the line's "level" (TRACE,
// DEBUG, INFO, WARN, ERROR or FATAL, any case) decides; a missing or
// invalid level, or a missing or invalid RFC 3339 "timestamp", makes the
// line INFO. Tests use it to check what the filter would drop.
func LambdaKeeps(line []byte, appLevel string) bool {
	order := map[string]int{"TRACE": 0, "DEBUG": 1, "INFO": 2, "WARN": 3, "ERROR": 4, "FATAL": 5}
	var l struct {
		Level     string `json:"level"`
		Timestamp string `json:"timestamp"`
	}
	level := order["INFO"]
	if json.Unmarshal(line, &l) == nil {
		if n, ok := order[strings.ToUpper(l.Level)]; ok {
			level = n
		}
		if _, err := time.Parse(time.RFC3339Nano, l.Timestamp); err != nil {
			level = order["INFO"]
		}
	}
	return level >= order[strings.ToUpper(appLevel)]
}
