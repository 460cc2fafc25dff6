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
func Metric(w io.Writer, function, name string, value int, now time.Time) error {
	return Metrics(w, []Dimension{{"Function", function}}, []Value{{Name: name, Unit: "Count", Value: float64(value)}}, now)
}

// Dimension is one dimension of an EMF line.
type Dimension struct{ Name, Value string }

// Value is one metric of an EMF line; Unit is a CloudWatch unit (Count,
// Bytes, None, …).
type Value struct {
	Name, Unit string
	Value      float64
}

// Metrics writes one CloudWatch embedded-metric-format line to w: namespace
// "cebulk", the metrics in values, all with the dimensions dims (one
// dimension set). A nil w writes nothing.
func Metrics(w io.Writer, dims []Dimension, values []Value, now time.Time) error {
	if w == nil || len(values) == 0 {
		return nil
	}
	names := make([]string, len(dims))
	doc := map[string]any{}
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
