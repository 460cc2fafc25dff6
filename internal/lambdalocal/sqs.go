package lambdalocal

import (
	"context"
	"fmt"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
)

// SQSSender is the part of the SQS client an SQSDestination uses.
type SQSSender interface {
	SendMessage(ctx context.Context, in *sqs.SendMessageInput, opts ...func(*sqs.Options)) (*sqs.SendMessageOutput, error)
}

// SQSDestination is an on-failure destination of type SQS: each invocation
// record becomes one message, its body the record's JSON, as Lambda sends it.
type SQSDestination struct {
	Client   SQSSender
	QueueURL string
}

// Send implements Destination.
func (d SQSDestination) Send(ctx context.Context, record []byte) error {
	if _, err := d.Client.SendMessage(ctx, &sqs.SendMessageInput{QueueUrl: aws.String(d.QueueURL), MessageBody: aws.String(string(record))}); err != nil {
		return fmt.Errorf("send the invocation record to %s: %w", d.QueueURL, err)
	}
	return nil
}
