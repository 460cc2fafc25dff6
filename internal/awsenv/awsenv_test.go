package awsenv

import (
	"context"
	"errors"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/lambda"
	lambdatypes "github.com/aws/aws-sdk-go-v2/service/lambda/types"
)

type fakeLambda struct {
	in  *lambda.InvokeInput
	err error
}

func (f *fakeLambda) Invoke(ctx context.Context, in *lambda.InvokeInput, _ ...func(*lambda.Options)) (*lambda.InvokeOutput, error) {
	f.in = in
	return &lambda.InvokeOutput{StatusCode: 202}, f.err
}

func TestAsyncInvoker(t *testing.T) {
	f := &fakeLambda{}
	if err := (AsyncInvoker{API: f}).InvokeAsync(t.Context(), "cebulk-export", []byte(`{"action":"collect"}`)); err != nil {
		t.Fatalf("InvokeAsync: %v", err)
	}
	if aws.ToString(f.in.FunctionName) != "cebulk-export" || f.in.InvocationType != lambdatypes.InvocationTypeEvent || string(f.in.Payload) != `{"action":"collect"}` {
		t.Errorf("Invoke input = %+v, want an Event invocation of cebulk-export with the payload", f.in)
	}
	boom := errors.New("throttled")
	f.err = boom
	if err := (AsyncInvoker{API: f}).InvokeAsync(t.Context(), "cebulk-export", nil); !errors.Is(err, boom) {
		t.Errorf("InvokeAsync error = %v, want it to wrap %v", err, boom)
	}
}

func TestLocal(t *testing.T) {
	if Local(aws.Config{}) {
		t.Errorf("Local(no endpoint) = true")
	}
	if !Local(aws.Config{BaseEndpoint: aws.String("http://127.0.0.1:5000")}) {
		t.Errorf("Local(endpoint) = false")
	}
	if !S3(aws.Config{Region: "us-east-1", BaseEndpoint: aws.String("http://127.0.0.1:5000")}).Options().UsePathStyle {
		t.Errorf("S3 client for a local endpoint is not path-style")
	}
	if S3(aws.Config{Region: "us-east-1"}).Options().UsePathStyle {
		t.Errorf("S3 client for AWS is path-style")
	}
}
