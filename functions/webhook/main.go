// Command webhook is the WebhookFunction: CE's job-completion callbacks and
// the operator API behind an API Gateway HTTP API (payload format 2.0). The
// routes live in internal/webhook; this file only wires them.
package main

import (
	"context"
	"log/slog"
	"net/http"
	"os"

	"github.com/aws/aws-lambda-go/lambda"

	"github.com/cebulk/cebulk/internal/apigwhttp"
	"github.com/cebulk/cebulk/internal/awsenv"
	"github.com/cebulk/cebulk/internal/ceclient"
	"github.com/cebulk/cebulk/internal/ledger"
	"github.com/cebulk/cebulk/internal/logging"
	"github.com/cebulk/cebulk/internal/s3stream"
	"github.com/cebulk/cebulk/internal/secrets"
	"github.com/cebulk/cebulk/internal/webhook"
	"github.com/cebulk/cebulk/pkg/ce"
)

func main() {
	ctx := context.Background()
	h, err := newHandler(ctx, os.Getenv)
	if err != nil {
		slog.Error("init failed", "err", err)
		os.Exit(1)
	}
	lambda.Start(apigwhttp.Handler(h))
}

// newHandler builds the server once per cold start.
func newHandler(ctx context.Context, getenv func(string) string) (http.Handler, error) {
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
	return webhook.NewServer(webhook.Config{
		Bucket:         cfg.Bucket,
		ExportFunction: cfg.ExportFunction,
		ImportFunction: cfg.ImportFunction,
		MaxExportDays:  cfg.MaxExportDays,
	}, webhook.Deps{
		Jobs:    ledger.New(store, cfg.Bucket),
		CE:      cec,
		Secrets: cec,
		Invoker: awsenv.AsyncInvoker{API: awsenv.Lambda(awsCfg)},
		Store:   store,
		Log:     log,
	}), nil
}
