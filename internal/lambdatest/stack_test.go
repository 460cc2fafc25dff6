package lambdatest_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/smithy-go"

	"github.com/cebulk/cebulk/internal/awsenv"
	"github.com/cebulk/cebulk/internal/awstest"
	"github.com/cebulk/cebulk/internal/lambdatest"
)

// TestStackEnforcesRoles runs the probe bootstrap as ExportFunction on a
// stack: it reads the stack's secret and writes under state/ (its role
// allows both, over TLS through the proxy), and is refused imports/.
func TestStackEnforcesRoles(t *testing.T) {
	secret := awstest.NewSecret(t, `{"userSecret":"u","organizationSecret":"o","elementToken":"e"}`)
	st := lambdatest.NewStack(t, lambdatest.StackOptions{SecretARN: secret})
	st.ExpectDenials()
	fn := st.Start(t, "ExportFunction", lambdatest.Build(t, "./internal/lambdatest/probe"), lambdatest.Options{})
	if fn.Name != st.Name+"-export" {
		t.Errorf("function name = %q, want %s-export", fn.Name, st.Name)
	}
	fn.MustInvoke(t, map[string]string{"secretId": secret, "bucket": st.Bucket, "key": "state/probe.json"})
	if d := st.Denials(); len(d) != 0 {
		t.Fatalf("denials for allowed requests: %v", d)
	}

	res, err := fn.Invoke(t.Context(), map[string]string{"secretId": secret, "bucket": st.Bucket, "key": "imports/probe.json"})
	if err != nil {
		t.Fatal(err)
	}
	if res.Error == nil || !strings.Contains(res.Error.Message, "AccessDenied") {
		t.Fatalf("probe writing imports/ = %s, want AccessDenied", res.Payload)
	}
	d := st.Denials()
	if len(d) != 1 || d[0].Action != "s3:PutObject" || !strings.HasSuffix(d[0].Resource, "/imports/probe.json") {
		t.Errorf("denials = %v, want one s3:PutObject on imports/probe.json", d)
	}

	// AWSConfig acts as the function, from the test process.
	c := awsenv.S3(st.AWSConfig(t, "ExportFunction"))
	_, err = c.GetObject(t.Context(), &s3.GetObjectInput{Bucket: aws.String(st.Bucket), Key: aws.String("state/missing.json")})
	if !awstest.IsNotFound(err) {
		t.Errorf("GetObject of a missing state key = %v, want NoSuchKey (the role may list its bucket)", err)
	}
	_, err = c.GetObject(t.Context(), &s3.GetObjectInput{Bucket: aws.String(st.Bucket), Key: aws.String("imports/x.csv")})
	var ae smithy.APIError
	if !errors.As(err, &ae) || ae.ErrorCode() != "AccessDenied" {
		t.Errorf("GetObject of imports/ = %v, want AccessDenied", err)
	}
}
