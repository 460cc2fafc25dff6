package lambdatest

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/lambda"

	"github.com/cebulk/cebulk/internal/awsenv"
	"github.com/cebulk/cebulk/internal/awstest"
	"github.com/cebulk/cebulk/internal/lambdalocal"
)

// RetryDelays are the waits before Lambda's two retries in the end-to-end
// tests: Lambda's 1 and 2 minutes, shortened.
var RetryDelays = [2]time.Duration{150 * time.Millisecond, 300 * time.Millisecond}

// FailureQueue is the functions' on-failure destination in a test: a moto
// SQS queue the Invoke API stand-in sends invocation records to through the
// SDK, as Lambda would.
type FailureQueue struct {
	URL string
}

// NewFailureQueue creates the queue for one test.
func NewFailureQueue(t testing.TB) *FailureQueue {
	t.Helper()
	return &FailureQueue{URL: awstest.NewQueue(t)}
}

// AsyncConfig is template.yaml's EventInvokeConfig (two retries, 6 hours)
// with the test's short RetryDelays and this queue as OnFailure.
func (q *FailureQueue) AsyncConfig(t testing.TB) lambdalocal.AsyncConfig {
	t.Helper()
	c := lambdalocal.DefaultAsyncConfig()
	c.RetryDelays = RetryDelays
	c.OnFailure = lambdalocal.SQSDestination{Client: awstest.SQS(t), QueueURL: q.URL}
	return c
}

// Records receives and deletes the queue's messages and decodes them as
// invocation records.
func (q *FailureQueue) Records(t testing.TB) []lambdalocal.DestinationRecord {
	t.Helper()
	var recs []lambdalocal.DestinationRecord
	for _, b := range awstest.Drain(t, q.URL) {
		var r lambdalocal.DestinationRecord
		if err := json.Unmarshal([]byte(b), &r); err != nil {
			t.Fatalf("failure queue message is not an invocation record: %v\n%s", err, b)
		}
		recs = append(recs, r)
	}
	return recs
}

// InvokeEvent queues payload for function at the Invoke API stand-in
// served at endpoint, as an asynchronous invocation (InvocationType Event)
// through the SDK, as S3, EventBridge or the webhook would.
func InvokeEvent(t testing.TB, endpoint, function string, payload any) {
	t.Helper()
	b, ok := payload.([]byte)
	if !ok {
		var err error
		if b, err = json.Marshal(payload); err != nil {
			t.Fatal(err)
		}
	}
	client := lambda.New(lambda.Options{
		Region:       "us-east-1",
		BaseEndpoint: aws.String(endpoint),
		Credentials:  credentials.NewStaticCredentialsProvider("test", "test", ""),
	})
	if err := (awsenv.AsyncInvoker{API: client}).InvokeAsync(t.Context(), function, b); err != nil {
		t.Fatal(err)
	}
}

// CheckExhausted checks that rec is Lambda's record of an asynchronous
// invocation of function with payload that failed three times (the first
// invocation and two retries).
func CheckExhausted(t testing.TB, rec lambdalocal.DestinationRecord, function string, payload []byte) {
	t.Helper()
	if _, err := time.Parse("2006-01-02T15:04:05.000Z", rec.Timestamp); err != nil || rec.Version != "1.0" {
		t.Errorf("record version %q, timestamp %q (%v); want 1.0 and RFC 3339 UTC with milliseconds", rec.Version, rec.Timestamp, err)
	}
	rc := rec.RequestContext
	if rc.Condition != lambdalocal.ConditionRetriesExhausted || rc.ApproximateInvokeCount != 3 ||
		!strings.HasSuffix(rc.FunctionARN, ":function:"+function+":$LATEST") || rc.RequestID == "" {
		t.Errorf("requestContext = %+v, want RetriesExhausted after 3 invocations of %s", rc, function)
	}
	if want := (lambdalocal.ResponseContext{StatusCode: 200, ExecutedVersion: "$LATEST", FunctionError: "Unhandled"}); rec.ResponseContext != want {
		t.Errorf("responseContext = %+v, want %+v", rec.ResponseContext, want)
	}
	var got, want any
	if json.Unmarshal(rec.RequestPayload, &got) != nil || json.Unmarshal(payload, &want) != nil || !reflect.DeepEqual(got, want) {
		t.Errorf("requestPayload = %s, want %s", rec.RequestPayload, payload)
	}
	var doc struct{ ErrorMessage, ErrorType string }
	if err := json.Unmarshal(rec.ResponsePayload, &doc); err != nil || doc.ErrorMessage == "" {
		t.Errorf("responsePayload = %s, want the function's error document", rec.ResponsePayload)
	}
}
