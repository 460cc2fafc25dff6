package localaws

import (
	"bytes"
	"errors"
	"io"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"
	smtypes "github.com/aws/aws-sdk-go-v2/service/secretsmanager/types"

	"github.com/cebulk/cebulk/internal/s3stream"
)

// The real SDK clients, pointed at the stack, work unchanged.
func TestStackWithTheSDK(t *testing.T) {
	stack := New("us-east-1")
	srv := httptest.NewServer(stack)
	defer srv.Close()
	cfg := aws.Config{
		Region:                     "us-east-1",
		BaseEndpoint:               aws.String(srv.URL),
		Credentials:                credentials.NewStaticCredentialsProvider("test", "test", ""),
		RequestChecksumCalculation: aws.RequestChecksumCalculationWhenRequired,
		ResponseChecksumValidation: aws.ResponseChecksumValidationWhenRequired,
	}
	ctx := t.Context()

	sm := secretsmanager.NewFromConfig(cfg)
	created, err := sm.CreateSecret(ctx, &secretsmanager.CreateSecretInput{Name: aws.String("cebulk"), SecretString: aws.String(`{"a":"b"}`)})
	if err != nil {
		t.Fatalf("CreateSecret: %v", err)
	}
	for _, id := range []string{"cebulk", *created.ARN} {
		out, err := sm.GetSecretValue(ctx, &secretsmanager.GetSecretValueInput{SecretId: aws.String(id)})
		if err != nil || aws.ToString(out.SecretString) != `{"a":"b"}` {
			t.Errorf("GetSecretValue(%s) = %v, %v", id, out, err)
		}
	}
	_, err = sm.GetSecretValue(ctx, &secretsmanager.GetSecretValueInput{SecretId: aws.String("missing")})
	var nf *smtypes.ResourceNotFoundException
	if !errors.As(err, &nf) {
		t.Errorf("GetSecretValue(missing) = %v, want ResourceNotFoundException", err)
	}

	c := s3.NewFromConfig(cfg, func(o *s3.Options) { o.UsePathStyle = true })
	if _, err := c.CreateBucket(ctx, &s3.CreateBucketInput{Bucket: aws.String("data")}); err != nil {
		t.Fatalf("CreateBucket: %v", err)
	}
	store := s3stream.New(c)
	payload := bytes.Repeat([]byte("0123456789"), 700_000) // 7 MB: a multipart upload
	if _, err := store.Put(ctx, "data", "exports/x/part.bin", io.MultiReader(bytes.NewReader(payload)), s3stream.PutOptions{}); err != nil {
		t.Fatalf("Put: %v", err)
	}
	dir := t.TempDir()
	n, err := Dump(ctx, c, "data", dir)
	if err != nil || n != 1 {
		t.Fatalf("Dump = %d, %v", n, err)
	}
	got, err := os.ReadFile(filepath.Join(dir, "exports", "x", "part.bin"))
	if err != nil || !bytes.Equal(got, payload) {
		t.Errorf("dumped object: %d bytes, err %v; want the %d bytes uploaded", len(got), err, len(payload))
	}
}
