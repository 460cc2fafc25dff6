package awsenv

import (
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"
	"github.com/google/go-cmp/cmp"
)

func TestSecretReaderRequest(t *testing.T) {
	const id = "arn:aws:secretsmanager:eu-west-1:123456789012:secret:cebulk/ce-AbCdEf"
	answer := lambdaAnswer(200, "", `{"ARN":"`+id+`","Name":"cebulk/ce","SecretString":"{\"userSecret\":\"u\"}","VersionId":"v1","VersionStages":["AWSCURRENT"]}`)
	rc := &recorder{answers: []func(http.ResponseWriter){answer}}
	srv := httptest.NewServer(rc)
	defer srv.Close()
	cfg := testConfig(srv, 1)
	if _, err := secretsmanager.NewFromConfig(cfg).GetSecretValue(t.Context(), &secretsmanager.GetSecretValueInput{SecretId: aws.String(id)}); err != nil {
		t.Fatalf("SDK GetSecretValue: %v", err)
	}
	got, err := NewSecretReader(cfg).GetSecretString(t.Context(), id)
	if err != nil || got == nil || *got != `{"userSecret":"u"}` {
		t.Fatalf("GetSecretString = %v, %v; want the secret string", got, err)
	}
	sdk, own := rc.reqs[0], rc.reqs[1]
	if err := verifySigV4(own, "ASIAEXAMPLE", "secret-key", "eu-west-1", "secretsmanager"); err != nil {
		t.Errorf("signature: %v", err)
	}
	shape := func(r received) []string {
		var body map[string]any
		_ = json.Unmarshal([]byte(r.Body), &body)
		b, _ := json.Marshal(body)
		return []string{r.Method, r.RawPath, string(b), r.Header.Get("X-Amz-Target"), r.Header.Get("Content-Type"), signedHeaders(r), scopeOf(r)}
	}
	if diff := cmp.Diff(shape(sdk), shape(own)); diff != "" {
		t.Errorf("request (-SDK +SecretReader):\n%s", diff)
	}
}

func TestSecretReaderAnswers(t *testing.T) {
	for _, tc := range []struct {
		name     string
		answers  []func(http.ResponseWriter)
		requests int
		want     *string
		code     string // of the APIError, "" for none
	}{
		{name: "string", answers: []func(http.ResponseWriter){lambdaAnswer(200, "", `{"SecretString":"s3cr3t"}`)}, requests: 1, want: aws.String("s3cr3t")},
		{name: "binary", answers: []func(http.ResponseWriter){lambdaAnswer(200, "", `{"SecretBinary":"AAEC"}`)}, requests: 1},
		{name: "missing", answers: []func(http.ResponseWriter){lambdaAnswer(400, "", `{"__type":"ResourceNotFoundException","message":"Secrets Manager can't find the specified secret."}`)}, requests: 1, code: "ResourceNotFoundException"},
		{name: "denied", answers: []func(http.ResponseWriter){lambdaAnswer(400, "", `{"__type":"com.amazonaws.secretsmanager#AccessDeniedException","Message":"not authorized"}`)}, requests: 1, code: "AccessDeniedException"},
		{name: "throttled, then read", answers: []func(http.ResponseWriter){lambdaAnswer(400, "", `{"__type":"ThrottlingException","message":"Rate exceeded"}`), lambdaAnswer(200, "", `{"SecretString":"s"}`)}, requests: 2, want: aws.String("s")},
		{name: "internal errors, retried", answers: []func(http.ResponseWriter){lambdaAnswer(500, "", `{"__type":"InternalServiceError","message":"x"}`)}, requests: 3, code: "InternalServiceError"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rc := &recorder{answers: tc.answers}
			srv := httptest.NewServer(rc)
			defer srv.Close()
			got, err := NewSecretReader(testConfig(srv, 3)).GetSecretString(t.Context(), "cebulk-ce")
			if len(rc.reqs) != tc.requests {
				t.Errorf("%d requests, want %d", len(rc.reqs), tc.requests)
			}
			var apiErr *APIError
			switch {
			case tc.code != "":
				if !errors.As(err, &apiErr) || apiErr.Code != tc.code || apiErr.Operation != "Secrets Manager GetSecretValue" {
					t.Errorf("GetSecretString error = %v, want an APIError %s", err, tc.code)
				}
			case err != nil:
				t.Errorf("GetSecretString: %v", err)
			case !cmp.Equal(tc.want, got):
				t.Errorf("GetSecretString = %v, want %v", aws.ToString(got), aws.ToString(tc.want))
			}
			if err != nil && (strings.Contains(err.Error(), "secret-key") || strings.Contains(err.Error(), "session-token")) {
				t.Errorf("error shows credentials: %v", err)
			}
		})
	}
}
