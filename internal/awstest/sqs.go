package awstest

import (
	"context"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
)

// SQS returns an SQS client for the local stack.
func SQS(t testing.TB) *sqs.Client {
	t.Helper()
	cfg := Config(t)
	return sqs.NewFromConfig(cfg)
}

// NewQueue creates a standard queue for one test, deletes it afterwards,
// and returns its URL.
func NewQueue(t testing.TB) string {
	t.Helper()
	return CreateQueue(t, UniqueName("cebulk-failures"))
}

// CreateQueue creates the standard queue name for one test, deletes it
// afterwards, and returns its URL.
func CreateQueue(t testing.TB, name string) string {
	t.Helper()
	c := SQS(t)
	out, err := c.CreateQueue(t.Context(), &sqs.CreateQueueInput{QueueName: aws.String(name)})
	if err != nil {
		t.Fatalf("CreateQueue: %v", err)
	}
	url := aws.ToString(out.QueueUrl)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_, _ = c.DeleteQueue(ctx, &sqs.DeleteQueueInput{QueueUrl: aws.String(url)})
	})
	return url
}

// Drain receives and deletes every message in the queue and returns their
// bodies (it stops at the first empty receive).
func Drain(t testing.TB, queueURL string) []string {
	t.Helper()
	c := SQS(t)
	var bodies []string
	for {
		out, err := c.ReceiveMessage(t.Context(), &sqs.ReceiveMessageInput{QueueUrl: aws.String(queueURL), MaxNumberOfMessages: 10})
		if err != nil {
			t.Fatalf("ReceiveMessage: %v", err)
		}
		if len(out.Messages) == 0 {
			return bodies
		}
		for _, m := range out.Messages {
			bodies = append(bodies, aws.ToString(m.Body))
			if _, err := c.DeleteMessage(t.Context(), &sqs.DeleteMessageInput{QueueUrl: aws.String(queueURL), ReceiptHandle: m.ReceiptHandle}); err != nil {
				t.Fatalf("DeleteMessage: %v", err)
			}
		}
	}
}
