package ce

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/cebulk/cebulk/internal/syncio"
)

// Credentials redact themselves for fmt and log/slog.
var (
	_ fmt.Formatter  = Credentials{}
	_ fmt.Stringer   = Credentials{}
	_ slog.LogValuer = Credentials{}
)

// callbackToken is the token carried by test callback URLs; like the
// credentials it must never appear in errors or logs.
const callbackToken = "tok-SECRET-99"

// secretValues are the strings no error or log record may contain.
var secretValues = []string{
	testCreds.UserSecret, testCreds.OrganizationSecret, testCreds.ElementToken,
	wantAuthorization, callbackToken, "SECRET", "TOKEN",
}

func assertNoSecrets(t *testing.T, s string) {
	t.Helper()
	for _, secret := range secretValues {
		if strings.Contains(s, secret) {
			t.Errorf("output contains secret %q:\n%s", secret, s)
		}
	}
}

func newTestLogger(w io.Writer) *slog.Logger {
	return slog.New(slog.NewJSONHandler(w, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// TestNoSecretsInErrorsOrLogs drives every error path of the client against
// a server that echoes the request's Authorization header and URL back in
// its error bodies, and checks that no error string, APIError field or log
// record carries a secret.
func TestNoSecretsInErrorsOrLogs(t *testing.T) {
	var logs syncio.Buffer
	c, mux, _ := setup(t, WithLogger(newTestLogger(&logs)), WithRetry(1, time.Millisecond, time.Millisecond))
	echo := func(status int) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			io.Copy(io.Discard, r.Body)
			w.WriteHeader(status)
			fmt.Fprintf(w, `{"message":"bad auth %s for %s","providerMessage":"%s","requestId":"%s"} callback=%s`,
				r.Header.Get("Authorization"), r.URL.String(), testCreds.ElementToken, testCreds.UserSecret,
				r.Header.Get("Elements-Async-Callback-Url"))
		}
	}
	mux.HandleFunc("/hubs/general/bulk/query", echo(http.StatusServiceUnavailable))
	mux.HandleFunc("/hubs/general/bulk/1/status", echo(http.StatusUnauthorized))
	mux.HandleFunc("/hubs/general/bulk/2/status", echo(http.StatusInternalServerError))
	mux.HandleFunc("/hubs/general/bulk/3/status", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, `{"id":"3","status":"ERROR","error":"denied for %s"}`, testCreds.OrganizationSecret)
	})
	mux.HandleFunc("/hubs/general/bulk/4/status", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, `{"id":"4","status":"RUNNING","recordsCount":"%s"}`, testCreds.UserSecret)
	})
	mux.HandleFunc("/hubs/general/bulk/1/errors", func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Query().Get("nextPage") == "" {
			w.Header().Set("elements-next-page-token", "page-TOKEN-2")
			w.Write([]byte(`[]`))
			return
		}
		echo(http.StatusBadRequest)(w, r)
	})
	mux.HandleFunc("/hubs/general/bulk/1/activities", echo(http.StatusNotFound))
	mux.HandleFunc("/hubs/general/bulk/2/activities", func(w http.ResponseWriter, r *http.Request) {
		hijackWrite(t, w, "HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n[{\"a\":")
	})
	mux.HandleFunc("/hubs/general/bulk/users", echo(http.StatusForbidden))
	mux.HandleFunc("/hubs/general/bulk/1/cancel", echo(http.StatusConflict))
	mux.HandleFunc("/hubs/general/bulk/jobs", echo(http.StatusBadGateway))

	ctx := t.Context()
	callback := "https://hooks.example.com/callbacks/ce?job=j1&token=" + callbackToken
	var errs []error
	record := func(err error) {
		if err == nil {
			t.Error("expected an error")
			return
		}
		errs = append(errs, err)
	}

	_, err := c.StartQuery(ctx, QueryRequest{Object: "activities", CallbackURL: callback, CallbackPayload: "p"})
	record(err)
	_, err = c.StartQuery(ctx, QueryRequest{Object: "activities", CallbackURL: "::" + callbackToken})
	record(err)
	_, err = c.Status(ctx, "1")
	record(err)
	_, err = c.Status(ctx, "2")
	record(err)
	_, err = c.Wait(ctx, "3")
	record(err)
	_, err = c.Status(ctx, "4")
	record(err)
	for _, err := range c.Errors(ctx, "1", 10) {
		if err != nil {
			record(err)
		}
	}
	_, err = c.Download(ctx, "1", "activities")
	record(err)
	rc, err := c.Download(ctx, "2", "activities")
	if err != nil {
		t.Fatal(err)
	}
	_, err = NewRecordReader(rc).Next()
	rc.Close()
	record(err)
	_, err = c.Upload(ctx, "users", strings.NewReader("{}"), UploadOptions{CallbackURL: callback})
	record(err)
	_, err = c.Upload(ctx, "users", io.MultiReader(strings.NewReader("{}"), errReader{errors.New("read failed")}), UploadOptions{CallbackURL: callback})
	record(err)
	record(c.Cancel(ctx, "1"))
	for _, err := range c.Jobs(ctx, "job_direction='UPLOAD'") {
		if err != nil {
			record(err)
		}
	}
	canceled, cancel := context.WithCancel(ctx)
	cancel()
	_, err = c.Status(canceled, "1")
	record(err)

	// A server that is down: transport errors.
	l, lerr := net.Listen("tcp", "127.0.0.1:0")
	if lerr != nil {
		t.Fatal(lerr)
	}
	addr := l.Addr().String()
	l.Close()
	down, err := NewClient("http://"+addr+"/elements/api-v2", testCreds, WithLogger(newTestLogger(&logs)), WithRetry(1, 0, 0))
	if err != nil {
		t.Fatal(err)
	}
	_, err = down.StartQuery(ctx, QueryRequest{Object: "users", CallbackURL: callback})
	record(err)
	for _, err := range down.Errors(ctx, "1", 5) {
		record(err)
	}

	if len(errs) < 15 {
		t.Errorf("collected %d errors, want every path covered", len(errs))
	}
	for _, err := range errs {
		assertNoSecrets(t, err.Error())
		assertNoSecrets(t, fmt.Sprintf("%+v", err))
		var apiErr *APIError
		if errors.As(err, &apiErr) {
			assertNoSecrets(t, apiErr.Message+apiErr.ProviderMessage+apiErr.RequestID+string(apiErr.Body)+apiErr.Path)
		}
	}
	if !strings.Contains(logs.String(), `"msg":"ce: retrying request"`) {
		t.Errorf("logs have no retry record:\n%s", logs.String())
	}
	assertNoSecrets(t, logs.String())
}
