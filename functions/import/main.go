// Command import is the ImportFunction: it loads files dropped under
// imports/<object>/ in the data bucket into Mixpanel through CE bulk
// uploads or Mixpanel's own APIs (BACKEND), in chunks, and writes a report under reports/. The pipeline
// lives in internal/importer; this file only wires it.
package main

import (
	"context"
	"encoding/json"
	"log/slog"
	"os"
	"time"

	"github.com/aws/aws-lambda-go/lambda"
	"github.com/aws/aws-lambda-go/lambdacontext"

	"github.com/cebulk/cebulk/internal/awsenv"
	"github.com/cebulk/cebulk/internal/backend"
	"github.com/cebulk/cebulk/internal/importer"
	"github.com/cebulk/cebulk/internal/lambdaenv"
	"github.com/cebulk/cebulk/internal/logging"
)

// safetyMargin is the time kept free before the Lambda deadline to finish
// a chunk's bookkeeping, checkpoint and re-invoke (the importer caps it at a
// quarter of an invocation's time, so short timeouts still make progress).
const safetyMargin = 2 * time.Minute

func main() {
	// JSON logs from the first line, so an init failure is readable too.
	slog.SetDefault(logging.New(slog.LevelInfo))
	ctx := context.Background()
	h, err := newHandler(ctx, os.Getenv)
	if err != nil {
		slog.Error("init failed", "err", err)
		os.Exit(1)
	}
	lambda.Start(h.handle)
}

// newHandler builds the importer once per cold start.
func newHandler(ctx context.Context, getenv func(string) string) (*handler, error) {
	cfg, err := loadConfig(getenv)
	if err != nil {
		return nil, err
	}
	c, err := lambdaenv.NewClients(cfg.Common, getenv)
	if err != nil {
		return nil, err
	}
	self := selfInvoker{api: awsenv.NewAsyncInvoker(c.AWS), name: lambdacontext.FunctionName}
	be, err := backend.Imports(cfg.Common, c)
	if err != nil {
		return nil, err
	}
	imp := importer.New(importer.Config{
		Bucket:       cfg.Bucket,
		ChunkRecords: cfg.ChunkRecords,
		CallbackURL:  cfg.CallbackURL,
		SafetyMargin: safetyMargin,
		Metrics:      os.Stdout,
		Function:     "import",
	}, be, c.Store, c.Jobs, self.resume, c.Log)
	return &handler{imp: imp, log: c.Log}, nil
}

// asyncInvoker queues an asynchronous invocation (awsenv.AsyncInvoker).
type asyncInvoker interface {
	InvokeAsync(ctx context.Context, function string, payload []byte) error
}

// selfInvoker re-invokes this function to resume an import.
type selfInvoker struct {
	api  asyncInvoker
	name string // AWS_LAMBDA_FUNCTION_NAME
}

func (s selfInvoker) resume(ctx context.Context, importID string) error {
	payload, err := json.Marshal(request{Action: actionResume, ImportID: importID})
	if err != nil {
		return err
	}
	return s.api.InvokeAsync(ctx, s.name, payload)
}
