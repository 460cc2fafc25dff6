package lambdatest

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/sqs"

	"github.com/cebulk/cebulk/internal/awsenv"
	"github.com/cebulk/cebulk/internal/awstest"
	"github.com/cebulk/cebulk/internal/lambdalocal"
)

// RetryDelays are the waits before Lambda's two retries in the end-to-end
// tests: Lambda's 1 and 2 minutes, shortened.
var RetryDelays = [2]time.Duration{150 * time.Millisecond, 300 * time.Millisecond}

// FailureQueue is the functions' on-failure destination in a test: the
// stack's moto SQS queue "<stack>-FailureQueue" (the name the rendered roles'
// sqs:SendMessage grant names), to which the Invoke API stand-in sends
// invocation records through the SDK, as Lambda would: with the failed
// function's execution role, through the stack's authorising proxy.
type FailureQueue struct {
	URL   string
	stack *Stack
}

// NewFailureQueue creates the stack's failure queue for one test.
func (s *Stack) NewFailureQueue(t testing.TB) *FailureQueue {
	t.Helper()
	return &FailureQueue{URL: awstest.CreateQueue(t, s.Name+"-FailureQueue"), stack: s}
}

// AsyncConfig is template.yaml's EventInvokeConfig (two retries, 6 hours)
// with the test's short RetryDelays and this queue as OnFailure, sent with
// the role of the function logicalID (started on the queue's stack), so a
// role without the destination's sqs:SendMessage grant is refused as on AWS.
func (q *FailureQueue) AsyncConfig(t testing.TB, logicalID string) lambdalocal.AsyncConfig {
	t.Helper()
	c := lambdalocal.DefaultAsyncConfig()
	c.RetryDelays = RetryDelays
	c.OnFailure = lambdalocal.SQSDestination{Client: sqs.NewFromConfig(q.stack.AWSConfig(t, logicalID)), QueueURL: q.URL}
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
// with the functions' own signed request (awsenv.AsyncInvoker), as S3,
// EventBridge or the webhook would.
func InvokeEvent(t testing.TB, endpoint, function string, payload any) {
	t.Helper()
	b, ok := payload.([]byte)
	if !ok {
		var err error
		if b, err = json.Marshal(payload); err != nil {
			t.Fatal(err)
		}
	}
	invoker := awsenv.NewAsyncInvoker(aws.Config{
		Region:       "us-east-1",
		BaseEndpoint: aws.String(endpoint),
		Credentials:  credentials.NewStaticCredentialsProvider("test", "test", ""),
	})
	if err := invoker.InvokeAsync(t.Context(), function, b); err != nil {
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
