// Command export is the ExportFunction: it starts CE bulk downloads of
// Mixpanel objects on a schedule, as backfills and on demand, collects the
// completed ones into partitions of the data bucket, and sweeps up jobs
// whose callback never came. The pipeline lives in internal/exporter; this
// package only wires it.
package main

import (
	"context"
	"log/slog"
	"os"
	_ "time/tzdata" // EXPORT_TIMEZONE, whatever the runtime image carries

	"github.com/aws/aws-lambda-go/lambda"

	"github.com/cebulk/cebulk/internal/awsenv"
	"github.com/cebulk/cebulk/internal/ceclient"
	"github.com/cebulk/cebulk/internal/exporter"
	"github.com/cebulk/cebulk/internal/ledger"
	"github.com/cebulk/cebulk/internal/logging"
	"github.com/cebulk/cebulk/internal/s3stream"
	"github.com/cebulk/cebulk/internal/secrets"
	"github.com/cebulk/cebulk/pkg/ce"
)

func main() {
	h, err := newHandler(context.Background(), os.Getenv)
	if err != nil {
		slog.Error("init failed", "err", err.Error())
		os.Exit(1)
	}
	lambda.StartHandlerFunc(h.handle)
}

// newHandler builds the handler once per cold start.
func newHandler(ctx context.Context, getenv func(string) string) (*handler, error) {
	slog.SetDefault(logging.New(slog.LevelInfo))
	cfg, err := loadConfig(getenv)
	if err != nil {
		return nil, err
	}
	log := logging.New(cfg.LogLevel)
	slog.SetDefault(log)
	awsCfg, err := awsenv.Load(ctx)
	if err != nil {
		return nil, err
	}
	store := s3stream.New(awsenv.S3(awsCfg), s3stream.WithLogger(log))
	loader := secrets.NewLoader(awsenv.SecretsManager(awsCfg), cfg.SecretID)
	cec := ceclient.New(loader, cfg.CEBaseURL, ce.WithLogger(log))
	ex := exporter.New(exporter.Config{
		Bucket:      cfg.Bucket,
		Objects:     cfg.Objects,
		Start:       cfg.Start,
		Location:    cfg.Location,
		Lag:         cfg.Lag,
		MaxJobs:     cfg.MaxJobs,
		CallbackURL: cfg.CallbackURL,
		Metrics:     os.Stdout, // CloudWatch embedded metric format
	}, cec, store, ledger.New(store, cfg.Bucket), log)
	return &handler{ex: ex, log: log}, nil
}
