package mixpanel

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
)

// echoSecrets writes an error body that repeats every secret the request
// carried, as a careless server or proxy might.
func echoSecrets(w http.ResponseWriter, r *http.Request, status int) {
	auth := r.Header.Get("Authorization")
	user, pass, _ := r.BasicAuth()
	body, _ := io.ReadAll(r.Body)
	msg := fmt.Sprintf("denied %s for %s:%s (%s) token %s body %.200s", auth, user, pass,
		strings.TrimPrefix(auth, "Basic "), testCreds.ProjectToken, body)
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(map[string]string{"error": msg, "status": msg})
}

func TestErrorsAndLogsNeverCarrySecrets(t *testing.T) {
	calls := map[string]func(c *Client) error{
		"export": func(c *Client) error {
			_, err := c.Export(t.Context(), ExportRequest{From: day("2026-11-25"), To: day("2026-11-25")})
			return err
		},
		"engage query": func(c *Client) error {
			for _, err := range c.Profiles(t.Context(), ProfileQuery{}) {
				return err
			}
			return nil
		},
		"import": func(c *Client) error {
			_, err := c.Import(t.Context(), seq(1, event(1, "")), IngestOptions{})
			return err
		},
		"engage update": func(c *Client) error {
			_, err := c.UpdateProfiles(t.Context(), seq(1, json.RawMessage(`{"$distinct_id":"a","$set":{}}`)), IngestOptions{})
			return err
		},
	}
	for name, call := range calls {
		for _, status := range []int{401, 413} {
			t.Run(fmt.Sprintf("%s %d", name, status), func(t *testing.T) {
				c, mux, _, logs := setup(t)
				n := 0
				mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
					n++
					if n == 1 {
						echoSecrets(w, r, http.StatusTooManyRequests) // logged, then retried
						return
					}
					echoSecrets(w, r, status)
				})
				err := call(c)
				if err == nil {
					t.Fatal("no error")
				}
				assertNoSecrets(t, "error", err.Error())
				assertNoSecrets(t, "error detail", fmt.Sprintf("%+v", err))
				var apiErr *APIError
				if !errors.As(err, &apiErr) {
					t.Fatalf("err = %v, want an *APIError", err)
				}
				assertNoSecrets(t, "APIError.Body", string(apiErr.Body))
				assertNoSecrets(t, "APIError.Message", apiErr.Message+apiErr.Status)
				if !strings.Contains(apiErr.Message, "REDACTED") {
					t.Errorf("message %q shows no redaction", apiErr.Message)
				}
				if strings.Contains(err.Error(), "?") || strings.Contains(err.Error(), "project_id=") {
					t.Errorf("error shows a query string: %v", err)
				}
				if !strings.Contains(logs.String(), "retrying request") {
					t.Errorf("the 429 was not logged: %s", logs)
				}
				assertNoSecrets(t, "logs", logs.String())
			})
		}
	}
}

func TestFailedRecordsAreRedacted(t *testing.T) {
	c, mux, _, _ := setup(t)
	mux.HandleFunc("POST /engage", func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(400)
		fmt.Fprintf(w, `{"code":400,"error":"x","failed_records":[{"index":0,"$distinct_id":"a","field":"$token","message":"$token %s is not valid for %s"}],"status":"Bad Request"}`,
			testCreds.ProjectToken, base64.StdEncoding.EncodeToString([]byte(testCreds.ServiceAccountUser+":"+testCreds.ServiceAccountSecret)))
	})
	res, err := c.UpdateProfileBatch(t.Context(), []Record{{1, json.RawMessage(`{"$distinct_id":"a","$set":{}}`)}})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Failed) != 1 {
		t.Fatalf("failures = %+v", res.Failed)
	}
	assertNoSecrets(t, "failure", fmt.Sprintf("%+v", res.Failed[0]))
}

func TestTransportErrorsHideTheURL(t *testing.T) {
	c, err := NewClient(testCreds, WithBaseURL("http://127.0.0.1:1/mp"), WithRetry(0, 0, 0))
	if err != nil {
		t.Fatal(err)
	}
	_, err = c.Export(t.Context(), ExportRequest{From: day("2026-11-25"), To: day("2026-11-25")})
	if err == nil {
		t.Fatal("export to a closed port succeeded")
	}
	if strings.Contains(err.Error(), "from_date") || strings.Contains(err.Error(), "127.0.0.1:1/mp") {
		t.Errorf("error shows the request URL: %v", err)
	}
	assertNoSecrets(t, "error", err.Error())
}
