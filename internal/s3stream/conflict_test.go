package s3stream_test

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/cebulk/cebulk/internal/s3stream"
)

// s3Errors answers PutObject with the queued S3 errors, then 200.
type s3Errors struct {
	mu       sync.Mutex
	answers  []int // status codes; 409 and 412 with S3's error bodies
	requests int
	ifMatch  []string
}

func (f *s3Errors) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.requests++
	f.ifMatch = append(f.ifMatch, r.Header.Get("If-Match")+r.Header.Get("If-None-Match"))
	status := http.StatusOK
	if len(f.answers) > 0 {
		status, f.answers = f.answers[0], f.answers[1:]
	}
	switch status {
	case http.StatusOK:
		w.Header().Set("ETag", `"etag-2"`)
		w.WriteHeader(http.StatusOK)
	case http.StatusConflict:
		w.Header().Set("Content-Type", "application/xml")
		w.WriteHeader(http.StatusConflict)
		_, _ = w.Write([]byte(`<?xml version="1.0" encoding="UTF-8"?><Error><Code>ConditionalRequestConflict</Code><Message>A conflicting conditional operation is currently in progress against this resource. Please try again.</Message><RequestId>R1</RequestId></Error>`))
	case http.StatusPreconditionFailed:
		w.Header().Set("Content-Type", "application/xml")
		w.WriteHeader(http.StatusPreconditionFailed)
		_, _ = w.Write([]byte(`<?xml version="1.0" encoding="UTF-8"?><Error><Code>PreconditionFailed</Code><Message>At least one of the pre-conditions you specified did not hold</Message><Condition>If-Match</Condition><RequestId>R2</RequestId></Error>`))
	}
}

func TestWriteSmallRetriesConditionalRequestConflict(t *testing.T) {
	for _, tc := range []struct {
		name         string
		answers      []int
		wantRequests int
		wantErr      bool
		precondition bool
	}{
		{"409 then success", []int{409}, 2, false, false},
		{"409 three times then success", []int{409, 409, 409}, 4, false, false},
		{"412 is a lost condition, not retried", []int{412}, 1, true, true},
		{"409 for good: an error, but not a lost condition", []int{409, 409, 409, 409, 409, 409, 409}, 6, true, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fake := &s3Errors{answers: tc.answers}
			srv := httptest.NewServer(fake)
			defer srv.Close()
			api := s3.New(s3.Options{
				Region: "us-east-1", BaseEndpoint: aws.String(srv.URL), UsePathStyle: true,
				Credentials: credentials.NewStaticCredentialsProvider("test", "test", ""),
			})
			etag, err := s3stream.New(api).WriteSmall(t.Context(), "b", "state/jobs/x.json", []byte(`{}`), "application/json", s3stream.Condition{IfMatch: `"etag-1"`})
			if (err != nil) != tc.wantErr || errors.Is(err, s3stream.ErrPrecondition) != tc.precondition {
				t.Fatalf("WriteSmall = %q, %v; want error %v, ErrPrecondition %v", etag, err, tc.wantErr, tc.precondition)
			}
			if err == nil && etag != `"etag-2"` {
				t.Errorf("ETag = %q", etag)
			}
			if fake.requests != tc.wantRequests {
				t.Errorf("PutObject requests = %d, want %d", fake.requests, tc.wantRequests)
			}
			for _, h := range fake.ifMatch {
				if h != `"etag-1"` {
					t.Errorf("a retry was sent with condition %q, want the same If-Match", h)
				}
			}
		})
	}
}
