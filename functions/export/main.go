// Command export is the ExportFunction: it starts CE bulk downloads of
// Mixpanel objects on a schedule, as backfills and on demand, collects the
// completed ones into partitions of the data bucket, and sweeps up jobs
// whose callback never came. The pipeline lives in internal/exporter; this
// package only wires it.
package main

import (
	"context"
	"encoding/json"
	"log/slog"
	"os"
	"runtime/debug"
	"sync"
	_ "time/tzdata" // EXPORT_TIMEZONE, whatever the runtime image carries

	"github.com/aws/aws-lambda-go/lambda"
	"github.com/aws/aws-lambda-go/lambdacontext"

	"github.com/cebulk/cebulk/internal/awsenv"
	"github.com/cebulk/cebulk/internal/backend"
	"github.com/cebulk/cebulk/internal/budget"
	"github.com/cebulk/cebulk/internal/exporter"
	"github.com/cebulk/cebulk/internal/lambdaenv"
	"github.com/cebulk/cebulk/internal/logging"
)

func main() {
	// JSON logs from the first line, so an init failure is readable too.
	slog.SetDefault(logging.New(slog.LevelInfo))
	h, err := newHandler(context.Background(), os.Getenv)
	if err != nil {
		slog.Error("init failed", "err", err.Error())
		os.Exit(1)
	}
	// The GC target is lowered at the first invocation, not before: at 25
	// the heap's first goal is 1 MiB instead of 4, and the start's own
	// allocations then ran the first GC cycle (its workers' start
	// included), about 1 ms of every cold start (BenchmarkColdStart).
	var gcTuned sync.Once
	lambda.StartHandlerFunc(func(ctx context.Context, raw json.RawMessage) (any, error) {
		gcTuned.Do(func() { tuneGC(os.Getenv("GOGC")) }) // the Go runtime's variable: template.yaml sets none
		return h.handle(ctx, raw)
	})
}

// collectGCPercent is the GC's target for ExportFunction. A collect holds
// about 20 MiB that lives the whole collect (two part buffers, the blocks,
// the compressors) and makes little garbage (about 6 MiB per GiB of
// input), so with GOGC's default of 100 the heap crept up to twice the live
// set over a long collect (a 4 GiB day: peak RSS 48 MiB against 37 MiB for
// 1 GiB, BenchmarkCollectRSS). At 25 that garbage is collected every 5 MiB
// or so, a cycle per GiB of input, and each is cheap: the live set is
// mostly pointer-free bytes.
const collectGCPercent = 25

// tuneGC sets collectGCPercent unless GOGC (gogc, its value in the
// environment) is set.
func tuneGC(gogc string) {
	if gogc == "" {
		debug.SetGCPercent(collectGCPercent)
	}
}

// newHandler builds the handler once per cold start.
func newHandler(ctx context.Context, getenv func(string) string) (*handler, error) {
	cfg, err := loadConfig(getenv)
	if err != nil {
		return nil, err
	}
	c, err := lambdaenv.NewClients(cfg.Common, getenv)
	if err != nil {
		return nil, err
	}
	b, err := budget.New(c.Store, cfg.Bucket, cfg.QueriesPerHour)
	if err != nil {
		return nil, err
	}
	invoker := awsenv.NewAsyncInvoker(c.AWS)
	// A collect that reaches its deadline continues in a new invocation.
	continueCollect := func(ctx context.Context, jobID string) error {
		payload, err := json.Marshal(map[string]string{"action": "collect", "jobId": jobID})
		if err != nil {
			return err
		}
		return invoker.InvokeAsync(ctx, lambdacontext.FunctionName, payload)
	}
	be, err := backend.Exports(cfg.Common, c)
	if err != nil {
		return nil, err
	}
	ex := exporter.New(exporter.Config{
		Bucket:      cfg.Bucket,
		Backend:     cfg.Backend,
		Objects:     cfg.Objects,
		Start:       cfg.Start,
		Location:    cfg.Location,
		Lag:         cfg.Lag,
		MaxJobs:     cfg.MaxJobs,
		Budget:      b,
		TimeBasis:   cfg.TimeBasis,
		Lookback:    cfg.Lookback,
		CallbackURL: cfg.CallbackURL,
		Metrics:     os.Stdout, // CloudWatch embedded metric format
		Continue:    continueCollect,
	}, be, c.Store, c.Jobs, c.Log)
	return &handler{ex: ex, log: c.Log}, nil
}
