package awsauthz

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestS3Call(t *testing.T) {
	const b = "arn:aws:s3:::bkt"
	tests := []struct {
		name       string
		method     string
		target     string
		header     map[string]string
		body       string
		want       []check
		objectRead bool
		unmapped   bool
	}{
		{name: "GetObject", method: "GET", target: "/bkt/state/a.json?x-id=GetObject", want: []check{{Action: "s3:GetObject", Resource: b + "/state/a.json"}}, objectRead: true},
		{name: "HeadObject", method: "HEAD", target: "/bkt/exports/x/_SUCCESS", want: []check{{Action: "s3:GetObject", Resource: b + "/exports/x/_SUCCESS"}}, objectRead: true},
		{name: "GetObject of a version", method: "GET", target: "/bkt/imports/f.csv?versionId=v1", want: []check{{Action: "s3:GetObjectVersion", Resource: b + "/imports/f.csv"}}, objectRead: true},
		{name: "key with spaces and slashes", method: "GET", target: "/bkt/imports/a%20b/c%2Bd.csv", want: []check{{Action: "s3:GetObject", Resource: b + "/imports/a b/c+d.csv"}}, objectRead: true},
		{name: "PutObject", method: "PUT", target: "/bkt/state/a.json?x-id=PutObject", want: []check{{Action: "s3:PutObject", Resource: b + "/state/a.json"}}},
		{name: "UploadPart", method: "PUT", target: "/bkt/exports/p.gz?partNumber=1&uploadId=u", want: []check{{Action: "s3:PutObject", Resource: b + "/exports/p.gz"}}},
		{name: "CopyObject", method: "PUT", target: "/bkt/exports/b", header: map[string]string{"X-Amz-Copy-Source": "bkt/exports/a%20b"},
			want: []check{{Action: "s3:PutObject", Resource: b + "/exports/b"}, {Action: "s3:GetObject", Resource: b + "/exports/a b"}}},
		{name: "CopyObject of a version", method: "PUT", target: "/bkt/exports/b", header: map[string]string{"X-Amz-Copy-Source": "/bkt/exports/a?versionId=v2"},
			want: []check{{Action: "s3:PutObject", Resource: b + "/exports/b"}, {Action: "s3:GetObjectVersion", Resource: b + "/exports/a"}}},
		{name: "CreateMultipartUpload", method: "POST", target: "/bkt/exports/p.gz?uploads", want: []check{{Action: "s3:PutObject", Resource: b + "/exports/p.gz"}}},
		{name: "CompleteMultipartUpload", method: "POST", target: "/bkt/exports/p.gz?uploadId=u", want: []check{{Action: "s3:PutObject", Resource: b + "/exports/p.gz"}}},
		{name: "AbortMultipartUpload", method: "DELETE", target: "/bkt/exports/p.gz?uploadId=u", want: []check{{Action: "s3:AbortMultipartUpload", Resource: b + "/exports/p.gz"}}},
		{name: "ListParts", method: "GET", target: "/bkt/exports/p.gz?uploadId=u", want: []check{{Action: "s3:ListMultipartUploadParts", Resource: b + "/exports/p.gz"}}},
		{name: "DeleteObject", method: "DELETE", target: "/bkt/state/imports/r", want: []check{{Action: "s3:DeleteObject", Resource: b + "/state/imports/r"}}},
		{name: "DeleteObject version", method: "DELETE", target: "/bkt/state/r?versionId=v", want: []check{{Action: "s3:DeleteObjectVersion", Resource: b + "/state/r"}}},
		{name: "DeleteObjects", method: "POST", target: "/bkt?delete", body: `<Delete><Object><Key>a</Key></Object><Object><Key>b</Key><VersionId>v</VersionId></Object></Delete>`,
			want: []check{{Action: "s3:DeleteObject", Resource: b + "/a"}, {Action: "s3:DeleteObjectVersion", Resource: b + "/b"}}},
		{name: "ListObjectsV2 with prefix", method: "GET", target: "/bkt?list-type=2&prefix=state%2Fjobs%2F&delimiter=%2F&max-keys=100",
			want: []check{{Action: "s3:ListBucket", Resource: b, Context: map[string]string{"s3:prefix": "state/jobs/", "s3:delimiter": "/", "s3:max-keys": "100"}}}},
		{name: "ListObjectsV2 without prefix", method: "GET", target: "/bkt?list-type=2", want: []check{{Action: "s3:ListBucket", Resource: b, Context: map[string]string{}}}},
		{name: "ListMultipartUploads", method: "GET", target: "/bkt?uploads&prefix=exports%2F",
			want: []check{{Action: "s3:ListBucketMultipartUploads", Resource: b, Context: map[string]string{"s3:prefix": "exports/"}}}},
		{name: "HeadBucket", method: "HEAD", target: "/bkt", want: []check{{Action: "s3:ListBucket", Resource: b}}},
		{name: "GetBucketLocation", method: "GET", target: "/bkt?location", want: []check{{Action: "s3:GetBucketLocation", Resource: b}}},
		{name: "CreateBucket", method: "PUT", target: "/bkt", want: []check{{Action: "s3:CreateBucket", Resource: b}}},
		{name: "object retention", method: "GET", target: "/bkt/k?retention", unmapped: true},
		{name: "unknown bucket subresource", method: "GET", target: "/bkt?intelligent-tiering", unmapped: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := httptest.NewRequest(tc.method, tc.target, strings.NewReader(tc.body))
			for k, v := range tc.header {
				r.Header.Set(k, v)
			}
			c, err := s3Call(r, func() ([]byte, error) { return []byte(tc.body), nil })
			var un errUnmapped
			if tc.unmapped {
				if !errors.As(err, &un) {
					t.Fatalf("s3Call() error = %v, want unmapped", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tc.want, c.Checks); diff != "" {
				t.Errorf("checks (-want +got):\n%s", diff)
			}
			if c.ObjectRead != tc.objectRead || c.Bucket != "bkt" {
				t.Errorf("ObjectRead = %v, Bucket = %q; want %v, bkt", c.ObjectRead, c.Bucket, tc.objectRead)
			}
		})
	}
}

func TestJSONServiceCalls(t *testing.T) {
	const full = "arn:aws:secretsmanager:us-east-1:123456789012:secret:ce-AbCdEf"
	resolve := func(id string) string { return "resolved:" + id }
	tests := []struct {
		name string
		call func(r *http.Request, body []byte) (call, error)
		tgt  string
		body string
		want check
	}{
		{name: "GetSecretValue by full ARN", tgt: "secretsmanager.GetSecretValue", body: `{"SecretId":"` + full + `"}`,
			want: check{Action: "secretsmanager:GetSecretValue", Resource: full}},
		{name: "GetSecretValue by name resolves it", tgt: "secretsmanager.GetSecretValue", body: `{"SecretId":"ce"}`,
			want: check{Action: "secretsmanager:GetSecretValue", Resource: "resolved:ce"}},
		{name: "GetSecretValue by partial ARN resolves it", tgt: "secretsmanager.GetSecretValue", body: `{"SecretId":"arn:aws:secretsmanager:us-east-1:123456789012:secret:ce"}`,
			want: check{Action: "secretsmanager:GetSecretValue", Resource: "resolved:arn:aws:secretsmanager:us-east-1:123456789012:secret:ce"}},
		{name: "SQS SendMessage (JSON)", tgt: "AmazonSQS.SendMessage", body: `{"QueueUrl":"http://127.0.0.1:5000/123456789012/stk-FailureQueue","MessageBody":"x"}`,
			want: check{Action: "sqs:SendMessage", Resource: "arn:aws:sqs:us-east-1:123456789012:stk-FailureQueue"}},
		{name: "SQS SendMessageBatch (JSON)", tgt: "AmazonSQS.SendMessageBatch", body: `{"QueueUrl":"https://sqs.us-east-1.amazonaws.com/123456789012/q"}`,
			want: check{Action: "sqs:SendMessage", Resource: "arn:aws:sqs:us-east-1:123456789012:q"}},
		{name: "SQS SendMessage (query)", body: `Action=SendMessage&QueueUrl=http%3A%2F%2F127.0.0.1%2F123456789012%2Fq&MessageBody=x`,
			want: check{Action: "sqs:SendMessage", Resource: "arn:aws:sqs:us-east-1:123456789012:q"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := httptest.NewRequest("POST", "/", strings.NewReader(tc.body))
			if tc.tgt != "" {
				r.Header.Set("X-Amz-Target", tc.tgt)
			}
			var c call
			var err error
			if strings.HasPrefix(tc.tgt, "secretsmanager.") {
				c, err = secretsCall(r, []byte(tc.body), Region, Account, resolve)
			} else {
				c, err = sqsCall(r, []byte(tc.body), Region, Account)
			}
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff([]check{tc.want}, c.Checks); diff != "" {
				t.Errorf("checks (-want +got):\n%s", diff)
			}
		})
	}
}

func TestLambdaCall(t *testing.T) {
	tests := []struct{ target, want string }{
		{"/2015-03-31/functions/stk-export/invocations", "arn:aws:lambda:us-east-1:123456789012:function:stk-export"},
		{"/2015-03-31/functions/stk-export:live/invocations", "arn:aws:lambda:us-east-1:123456789012:function:stk-export:live"},
		{"/2015-03-31/functions/stk-export/invocations?Qualifier=3", "arn:aws:lambda:us-east-1:123456789012:function:stk-export:3"},
		{"/2015-03-31/functions/arn%3Aaws%3Alambda%3Aus-east-1%3A123456789012%3Afunction%3Astk-import/invocations", "arn:aws:lambda:us-east-1:123456789012:function:stk-import"},
	}
	for _, tc := range tests {
		c, err := lambdaCall(httptest.NewRequest("POST", tc.target, nil), Region, Account)
		if err != nil {
			t.Fatalf("%s: %v", tc.target, err)
		}
		if diff := cmp.Diff([]check{{Action: "lambda:InvokeFunction", Resource: tc.want}}, c.Checks); diff != "" {
			t.Errorf("%s (-want +got):\n%s", tc.target, diff)
		}
	}
	if _, err := lambdaCall(httptest.NewRequest("GET", "/2015-03-31/functions/stk-export", nil), Region, Account); err == nil {
		t.Errorf("GetFunction mapped; want unmapped")
	}
}

func TestCredential(t *testing.T) {
	r := httptest.NewRequest("GET", "/bkt/k", nil)
	r.Header.Set("Authorization", "AWS4-HMAC-SHA256 Credential=AKIAEXAMPLE/20261202/us-east-1/s3/aws4_request, SignedHeaders=host;x-amz-date, Signature=abc")
	if k, s := credential(r); k != "AKIAEXAMPLE" || s != "s3" {
		t.Errorf("credential() = %q, %q", k, s)
	}
	p := httptest.NewRequest("GET", "/bkt/k?X-Amz-Credential=AKIAPRESIGN%2F20261202%2Fus-east-1%2Fs3%2Faws4_request", nil)
	if k, s := credential(p); k != "AKIAPRESIGN" || s != "s3" {
		t.Errorf("credential(presigned) = %q, %q", k, s)
	}
}
