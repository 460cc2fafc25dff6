// Command probe is the smallest Lambda function of this repository: it reads
// a JSON secret from Secrets Manager and writes the secret's field names (never
// its values) to an S3 object. The lambdatest harness test runs it under the
// runtime interface emulator against the local stack to prove the harness.
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"slices"

	"github.com/aws/aws-lambda-go/lambda"
	"github.com/aws/aws-lambda-go/lambdacontext"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"

	"github.com/cebulk/cebulk/internal/awsenv"
)

type request struct {
	SecretID string `json:"secretId"`
	Bucket   string `json:"bucket"`
	Key      string `json:"key"`
}

type response struct {
	Fields []string `json:"fields"`
}

type handler struct {
	s3  *s3.Client
	sm  *secretsmanager.Client
	log *slog.Logger
}

func (h *handler) handle(ctx context.Context, req request) (response, error) {
	out, err := h.sm.GetSecretValue(ctx, &secretsmanager.GetSecretValueInput{SecretId: &req.SecretID})
	if err != nil {
		return response{}, fmt.Errorf("get secret: %v", err)
	}
	var fields map[string]any
	if err := json.Unmarshal([]byte(*out.SecretString), &fields); err != nil {
		return response{}, fmt.Errorf("secret is not a JSON object")
	}
	var resp response
	for k := range fields {
		resp.Fields = append(resp.Fields, k)
	}
	slices.Sort(resp.Fields)
	body, _ := json.Marshal(resp)
	if _, err := h.s3.PutObject(ctx, &s3.PutObjectInput{Bucket: &req.Bucket, Key: &req.Key, Body: bytes.NewReader(body)}); err != nil {
		return response{}, fmt.Errorf("put object: %v", err)
	}
	h.log.InfoContext(ctx, "probe wrote object", "bucket", req.Bucket, "key", req.Key)
	return resp, nil
}

func main() {
	log := lambdacontext.NewLogger()
	cfg, err := awsenv.FromEnv(os.Getenv)
	if err != nil {
		log.Error("init", "err", err)
		os.Exit(1)
	}
	h := &handler{s3: awsenv.S3(cfg), sm: secretsmanager.NewFromConfig(cfg), log: log}
	lambda.Start(h.handle)
}
