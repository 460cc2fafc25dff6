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
	"github.com/cebulk/cebulk/internal/lambdaenv"
	"github.com/cebulk/cebulk/internal/logging"
	"github.com/cebulk/cebulk/internal/webhook"
)

func main() {
	// JSON logs from the first line, so an init failure is readable too.
	slog.SetDefault(logging.New(slog.LevelInfo))
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
	c, err := lambdaenv.NewClients(cfg.Common, getenv)
	if err != nil {
		return nil, err
	}
	return webhook.NewServer(webhook.Config{
		Bucket:         cfg.Bucket,
		ExportFunction: cfg.ExportFunction,
		ImportFunction: cfg.ImportFunction,
		MaxExportDays:  cfg.MaxExportDays,
		NoCallbacks:    cfg.Backend == lambdaenv.BackendMixpanel,
	}, webhook.Deps{
		Jobs:    c.Jobs,
		CE:      c.CE,
		Secrets: c.CE,
		Invoker: awsenv.NewAsyncInvoker(c.AWS),
		Store:   c.Store,
		Log:     c.Log,
	}), nil
}
