package ce

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestDownload(t *testing.T) {
	tests := []struct {
		name       string
		opts       []DownloadOption
		fixture    string
		wantAccept string
	}{
		{"default JSON", nil, "download-activities.json", "application/json"},
		{"JSON lines", []DownloadOption{WithAccept(AcceptJSONL)}, "download-activities.jsonl", "application/jsonl"},
		{"CSV", []DownloadOption{WithAccept(AcceptCSV)}, "download-users.csv", "text/csv"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c, mux, _ := setup(t)
			body := fixture(t, tc.fixture)
			mux.HandleFunc("/hubs/general/bulk/42/activities", func(w http.ResponseWriter, r *http.Request) {
				testMethod(t, r, "GET")
				testAuth(t, r)
				testHeader(t, r, "Accept", tc.wantAccept)
				testQuery(t, r, url.Values{})
				w.Header().Set("Content-Type", tc.wantAccept)
				w.Write(body)
			})
			rc, err := c.Download(t.Context(), "42", "activities", tc.opts...)
			if err != nil {
				t.Fatalf("Download: %v", err)
			}
			defer rc.Close()
			got, err := io.ReadAll(rc)
			if err != nil {
				t.Fatalf("read download: %v", err)
			}
			if diff := cmp.Diff(string(body), string(got)); diff != "" {
				t.Errorf("download body (-want +got):\n%s", diff)
			}
		})
	}
}

func TestDownloadRetriesBeforeBody(t *testing.T) {
	c, mux, _ := setup(t)
	var calls atomic.Int32
	mux.HandleFunc("/hubs/general/bulk/42/users", func(w http.ResponseWriter, r *http.Request) {
		if calls.Add(1) < 3 {
			w.WriteHeader(http.StatusBadGateway)
			return
		}
		io.WriteString(w, `[{"$distinct_id":"1"}]`)
	})
	rc, err := c.Download(t.Context(), "42", "users")
	if err != nil {
		t.Fatalf("Download: %v", err)
	}
	defer rc.Close()
	b, err := io.ReadAll(rc)
	if err != nil || string(b) != `[{"$distinct_id":"1"}]` {
		t.Errorf("ReadAll = %q, %v", b, err)
	}
	if got := calls.Load(); got != 3 {
		t.Errorf("calls = %d, want 3", got)
	}
}

func TestDownloadErrors(t *testing.T) {
	tests := []struct {
		name      string
		status    int
		wantCalls int32
		wantIs    error
	}{
		{"404", http.StatusNotFound, 1, ErrNotFound},
		{"406 wrong Accept", http.StatusNotAcceptable, 1, nil},
		{"401", http.StatusUnauthorized, 1, ErrUnauthorized},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c, mux, _ := setup(t)
			var calls atomic.Int32
			mux.HandleFunc("/hubs/general/bulk/42/users", func(w http.ResponseWriter, r *http.Request) {
				calls.Add(1)
				w.WriteHeader(tc.status)
			})
			rc, err := c.Download(t.Context(), "42", "users")
			if err == nil {
				rc.Close()
				t.Fatal("Download = nil error")
			}
			var apiErr *APIError
			if !errors.As(err, &apiErr) || apiErr.StatusCode != tc.status {
				t.Errorf("Download error = %v, want APIError %d", err, tc.status)
			}
			if tc.wantIs != nil && !errors.Is(err, tc.wantIs) {
				t.Errorf("errors.Is(%v, %v) = false", err, tc.wantIs)
			}
			if got := calls.Load(); got != tc.wantCalls {
				t.Errorf("calls = %d, want %d", got, tc.wantCalls)
			}
		})
	}
}

// hijackWrite answers with raw bytes and closes the connection.
func hijackWrite(t *testing.T, w http.ResponseWriter, raw string) {
	t.Helper()
	conn, buf, err := w.(http.Hijacker).Hijack()
	if err != nil {
		t.Errorf("Hijack: %v", err)
		return
	}
	defer conn.Close()
	buf.WriteString(raw)
	buf.Flush()
}

func TestDownloadTruncated(t *testing.T) {
	const records = `[{"event":"a","properties":{"time":1}},{"event":"b","properties":{"ti`
	tests := []struct {
		name string
		raw  string
	}{
		{"content-length mismatch", fmt.Sprintf("HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s", len(records)+500, records)},
		{"chunked without last chunk", fmt.Sprintf("HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n%x\r\n%s\r\n", len(records), records)},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c, mux, _ := setup(t)
			var calls atomic.Int32
			mux.HandleFunc("/hubs/general/bulk/42/activities", func(w http.ResponseWriter, r *http.Request) {
				calls.Add(1)
				hijackWrite(t, w, tc.raw)
			})
			rc, err := c.Download(t.Context(), "42", "activities")
			if err != nil {
				t.Fatalf("Download: %v", err)
			}
			defer rc.Close()
			got, err := io.ReadAll(rc)
			if err == nil {
				t.Fatalf("ReadAll of a truncated body = %d bytes, nil error; want an error", len(got))
			}
			if !errors.Is(err, io.ErrUnexpectedEOF) {
				t.Errorf("ReadAll error = %v, want io.ErrUnexpectedEOF", err)
			}
			if string(got) != records {
				t.Errorf("bytes before the error = %q, want %q", got, records)
			}
			// The error is sticky and the record reader reports it.
			if _, err2 := rc.Read(make([]byte, 1)); err2 == nil || err2 == io.EOF {
				t.Errorf("Read after the error = %v, want the same error", err2)
			}
			if got := calls.Load(); got != 1 {
				t.Errorf("calls = %d, want 1 (no retry once the body is handed out)", got)
			}
		})
	}
}

func TestDownloadTruncatedRecordReader(t *testing.T) {
	c, mux, _ := setup(t)
	body := `[{"event":"a"},{"event":"b"},{"event":"c"}]`
	mux.HandleFunc("/hubs/general/bulk/42/activities", func(w http.ResponseWriter, r *http.Request) {
		// A JSON-lines cut exactly at a record boundary parses cleanly on its
		// own: only the transport can tell that bytes are missing.
		hijackWrite(t, w, fmt.Sprintf("HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s", len(body)+10, `{"event":"a"}`+"\n"))
	})
	rc, err := c.Download(t.Context(), "42", "activities")
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	rr := NewRecordReader(rc)
	n := 0
	for {
		_, err = rr.Next()
		if err != nil {
			break
		}
		n++
	}
	var decErr *DecodeError
	if !errors.As(err, &decErr) || !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Errorf("Next error after %d records = %v, want a *DecodeError wrapping io.ErrUnexpectedEOF", n, err)
	}
}

// TestDownloadContentLengthCheck uses bodies that end early with io.EOF, as
// a custom RoundTripper might deliver them: only the Content-Length check
// of the download body catches them.
func TestDownloadContentLengthCheck(t *testing.T) {
	tests := []struct {
		name          string
		body          string
		contentLength int64
		wantErr       bool
	}{
		{"short", "12345", 10, true},
		{"long", "1234567890ab", 10, true},
		{"exact", "1234567890", 10, false},
		{"unknown length", "12345", -1, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			rt := roundTripFunc(func(r *http.Request) (*http.Response, error) {
				return &http.Response{StatusCode: 200, Header: http.Header{}, ContentLength: tc.contentLength,
					Body: io.NopCloser(strings.NewReader(tc.body))}, nil
			})
			c, err := NewClient("https://ce.example.com/", testCreds, WithHTTPClient(&http.Client{Transport: rt}))
			if err != nil {
				t.Fatal(err)
			}
			rc, err := c.Download(t.Context(), "1", "users")
			if err != nil {
				t.Fatal(err)
			}
			defer rc.Close()
			_, err = io.ReadAll(rc)
			if (err != nil) != tc.wantErr {
				t.Errorf("ReadAll error = %v, want error %v", err, tc.wantErr)
			}
		})
	}
}

func TestDownloadConnectionReset(t *testing.T) {
	rt := roundTripFunc(func(r *http.Request) (*http.Response, error) {
		return &http.Response{StatusCode: 200, Header: http.Header{}, ContentLength: -1,
			Body: io.NopCloser(io.MultiReader(strings.NewReader(`[{"a":1}`), errReader{syscall.ECONNRESET}))}, nil
	})
	c, err := NewClient("https://ce.example.com/", testCreds, WithHTTPClient(&http.Client{Transport: rt}))
	if err != nil {
		t.Fatal(err)
	}
	rc, err := c.Download(t.Context(), "1", "users")
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	if _, err := io.ReadAll(rc); !errors.Is(err, syscall.ECONNRESET) {
		t.Errorf("ReadAll error = %v, want ECONNRESET", err)
	}
}

type errReader struct{ err error }

func (e errReader) Read([]byte) (int, error) { return 0, e.err }

func TestDownloadCloseUnblocksRead(t *testing.T) {
	c, mux, _ := setup(t)
	release := make(chan struct{})
	mux.HandleFunc("/hubs/general/bulk/1/users", func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte("["))
		w.(http.Flusher).Flush()
		select {
		case <-release:
		case <-r.Context().Done():
		}
	})
	defer close(release)
	rc, err := c.Download(t.Context(), "1", "users")
	if err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(rc)
	if b, err := br.ReadByte(); err != nil || b != '[' {
		t.Fatalf("first byte = %q, %v", b, err)
	}
	done := make(chan error, 1)
	go func() {
		_, err := br.ReadByte()
		done <- err
	}()
	if err := rc.Close(); err != nil {
		t.Errorf("Close: %v", err)
	}
	select {
	case err := <-done:
		if err == nil {
			t.Error("Read after Close = nil error")
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Close did not unblock a pending Read")
	}
}

func TestDownloadContextCanceledMidBody(t *testing.T) {
	c, mux, _ := setup(t)
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	mux.HandleFunc("/hubs/general/bulk/1/users", func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte(`[{"a":1},`))
		w.(http.Flusher).Flush()
		<-r.Context().Done()
	})
	rc, err := c.Download(ctx, "1", "users")
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	buf := make([]byte, 9)
	if _, err := io.ReadFull(rc, buf); err != nil {
		t.Fatal(err)
	}
	cancel()
	_, err = io.ReadAll(rc)
	if !errors.Is(err, context.Canceled) {
		t.Errorf("ReadAll after cancel = %v, want context.Canceled", err)
	}
}

// The download body is what Download documents: an io.ReadCloser.
var _ io.ReadCloser = (*downloadBody)(nil)
