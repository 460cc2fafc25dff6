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
	doc := map[string]any{
		"_aws": map[string]any{
			"Timestamp": now.UnixMilli(),
			"CloudWatchMetrics": []any{map[string]any{
				"Namespace":  "cebulk",
				"Dimensions": [][]string{{"Function"}},
				"Metrics":    []any{map[string]string{"Name": name, "Unit": "Count"}},
			}},
		},
		"Function": function,
		name:       value,
	}
	b, err := json.Marshal(doc)
	if err != nil {
		return err
	}
	_, err = w.Write(append(b, '\n'))
	return err
}
