package lambdatest_test

import (
	"encoding/json"
	"io"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/google/go-cmp/cmp"

	"github.com/cebulk/cebulk/internal/awstest"
	"github.com/cebulk/cebulk/internal/lambdatest"
)

// TestProbeUnderRuntimeEmulator proves the harness: a real bootstrap built
// from this repository runs under aws-lambda-rie, reads a secret from the
// local Secrets Manager and writes an object to the local S3.
func TestProbeUnderRuntimeEmulator(t *testing.T) {
	bucket := awstest.NewBucket(t)
	secret := awstest.NewSecret(t, `{"userSecret":"u-SECRET","organizationSecret":"o-SECRET","elementToken":"e-SECRET"}`)

	fn := lambdatest.Start(t, lambdatest.Build(t, "./internal/lambdatest/probe"), lambdatest.Options{Name: "probe"})
	payload := fn.MustInvoke(t, map[string]string{"secretId": secret, "bucket": bucket, "key": "probe/out.json"})

	want := `{"fields":["elementToken","organizationSecret","userSecret"]}`
	if diff := cmp.Diff(want, string(payload)); diff != "" {
		t.Errorf("invoke payload mismatch (-want +got):\n%s", diff)
	}
	obj, err := awstest.S3(t).GetObject(t.Context(), &s3.GetObjectInput{Bucket: &bucket, Key: ptr("probe/out.json")})
	if err != nil {
		t.Fatalf("GetObject: %v", err)
	}
	defer obj.Body.Close()
	body, _ := io.ReadAll(obj.Body)
	var got struct{ Fields []string }
	if err := json.Unmarshal(body, &got); err != nil {
		t.Fatalf("object is not JSON: %v: %s", err, body)
	}
	if diff := cmp.Diff([]string{"elementToken", "organizationSecret", "userSecret"}, got.Fields); diff != "" {
		t.Errorf("object fields mismatch (-want +got):\n%s", diff)
	}
	if logs := fn.Logs(); contains(logs, "SECRET") {
		t.Errorf("function logs contain a secret value:\n%s", logs)
	}
}

// TestHandlerErrorIsReported checks that a handler error comes back as an
// InvokeError rather than a payload.
func TestHandlerErrorIsReported(t *testing.T) {
	fn := lambdatest.Start(t, lambdatest.Build(t, "./internal/lambdatest/probe"), lambdatest.Options{Name: "probe"})
	res, err := fn.Invoke(t.Context(), map[string]string{"secretId": "does-not-exist", "bucket": "b", "key": "k"})
	if err != nil {
		t.Fatalf("Invoke: %v", err)
	}
	if res.Error == nil {
		t.Fatalf("Invoke(missing secret) = %s, want a handler error", res.Payload)
	}
}

func ptr[T any](v T) *T { return &v }

func contains(s, sub string) bool { return strings.Contains(s, sub) }
