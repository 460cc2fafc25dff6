package cetest_test

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"io"
	"mime/multipart"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/cebulk/cebulk/internal/cetest"
)

// receiver is a webhook endpoint that records what it gets and answers
// the codes queued in answers (then 200).
type receiver struct {
	mu      sync.Mutex
	got     []received
	answers []int
}

type received struct {
	method, query string
	header        http.Header
	body          []byte
}

func (rc *receiver) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	rc.mu.Lock()
	defer rc.mu.Unlock()
	rc.got = append(rc.got, received{method: r.Method, query: r.URL.RawQuery, header: r.Header.Clone(), body: body})
	code := http.StatusOK
	if len(rc.answers) > 0 {
		code, rc.answers = rc.answers[0], rc.answers[1:]
	}
	w.WriteHeader(code)
}

func (rc *receiver) received() []received {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return append([]received(nil), rc.got...)
}

func newReceiver(t *testing.T, answers ...int) (*receiver, string) {
	rc := &receiver{answers: answers}
	srv := httptest.NewServer(rc)
	t.Cleanup(srv.Close)
	return rc, srv.URL
}

// verify checks a signature with crypto/hmac, independently of cetest.Sign.
func verify(body []byte, key, header string) bool {
	mac := hmac.New(sha256.New, []byte(key))
	mac.Write(body)
	want := "sha256=" + base64.StdEncoding.EncodeToString(mac.Sum(nil))
	return hmac.Equal([]byte(want), []byte(header))
}

func TestSignMatchesDocumentedVector(t *testing.T) {
	got := cetest.Sign([]byte("<INSERT_EVENT_NOTIFICATION_RESPONSE_BODY>"), "MySecretEventSignatureKey")
	if want := "sha256=jHdbRx5EZAsOfTwAPJOGkNUzQMVVdu5VJlxcsk+G6jQ="; got != want {
		t.Errorf("Sign(documented vector) = %q, want %q", got, want)
	}
}

func TestCallbackSigned(t *testing.T) {
	rc, hook := newReceiver(t)
	e := newEnv(t, cetest.Options{SignatureKey: "K", CompletionDelay: 10 * time.Second})
	e.fake.Seed("activities", []map[string]any{event("Login", e.clock.Now().Add(-time.Hour), "u")})
	cb := hook + "/callbacks/ce?job=export-activities-2026-11-25&token=abc"
	body, ct := multipartBody(t, `{"callback-payload":{"ledger":"export-activities-2026-11-25"}}`, "")
	// The file part is ignored by bulk/query; metaData carries the payload.
	r := e.do("POST", "/hubs/general/bulk/query?q=select%20*%20from%20activities", body,
		"Content-Type: "+ct, cetest.CallbackHeader+": "+cb)
	if r.code != http.StatusOK {
		t.Fatalf("POST bulk/query = %d %s", r.code, r.body)
	}
	id := r.object(t)["id"].(string)

	if got := e.fake.DeliverCallbacks(t.Context()); len(got) != 0 {
		t.Fatalf("DeliverCallbacks before completion = %v, want none", got)
	}
	e.clock.Advance(10 * time.Second)
	ds := e.fake.DeliverCallbacks(t.Context())
	if len(ds) != 1 || !ds[0].OK() || ds[0].JobID != id || ds[0].Attempt != 1 || ds[0].URL != cb {
		t.Fatalf("DeliverCallbacks = %+v, want one OK first attempt for job %s", ds, id)
	}
	got := rc.received()
	if len(got) != 1 {
		t.Fatalf("receiver got %d callbacks, want 1", len(got))
	}
	c := got[0]
	if c.method != "POST" || c.header.Get("Content-Type") != "application/json" || c.query != "job=export-activities-2026-11-25&token=abc" {
		t.Errorf("callback = %s ?%s Content-Type %q, want POST ?job=...&token=abc application/json", c.method, c.query, c.header.Get("Content-Type"))
	}
	if sig := c.header.Get("Elements-Webhook-Signature"); !verify(c.body, "K", sig) {
		t.Errorf("signature %q does not verify over body %s", sig, c.body)
	}
	var summary map[string]any
	if err := json.Unmarshal(c.body, &summary); err != nil {
		t.Fatal(err)
	}
	want := map[string]any{
		"id": id, "status": "COMPLETED", "recordsCount": float64(1), "recordsFailedCount": float64(0),
		"object_name": "activities", "job_direction": "DOWNLOAD", "fileFormat": "json",
		"instanceId": float64(cetest.DefaultInstanceID), "bulk_start_time": "2026-11-26T12:00:00.000Z",
		"bulk_finish_time": "2026-11-26T12:00:10.000Z",
		"callback-payload": map[string]any{"ledger": "export-activities-2026-11-25"},
	}
	if diff := cmp.Diff(want, summary); diff != "" {
		t.Errorf("callback body mismatch (-want +got):\n%s", diff)
	}
	// A callback is the status body plus callback-payload.
	st := e.status(id)
	delete(summary, "callback-payload")
	if diff := cmp.Diff(st, summary); diff != "" {
		t.Errorf("callback body differs from status (-status +callback):\n%s", diff)
	}
	if again := e.fake.DeliverCallbacks(t.Context()); len(again) != 0 {
		t.Errorf("second DeliverCallbacks = %v, want none", again)
	}
	if got := e.fake.Deliveries(); len(got) != 1 || got[0].StatusCode != 200 || string(got[0].Body) != string(c.body) {
		t.Errorf("Deliveries() = %+v, want the one delivery", got)
	}
}

func TestCallbackUnsigned(t *testing.T) {
	rc, hook := newReceiver(t)
	e := newEnv(t, cetest.Options{})
	e.startQuery("q=select%20*%20from%20users", cetest.CallbackHeader+": "+hook)
	e.fake.DeliverCallbacks(t.Context())
	got := rc.received()
	if len(got) != 1 {
		t.Fatalf("receiver got %d callbacks, want 1", len(got))
	}
	if _, ok := got[0].header["Elements-Webhook-Signature"]; ok {
		t.Errorf("callback without a SignatureKey carries a signature")
	}
}

func TestCallbackPayloadForms(t *testing.T) {
	_, hook := newReceiver(t)
	form := url.Values{"metaData": {`{"callback-payload":"p"}`}}.Encode()
	var mp strings.Builder
	mw := multipart.NewWriter(&mp)
	mw.WriteField("metaData", `{"callback-payload":"p"}`)
	mw.Close()
	tests := []struct {
		name, contentType, body string
		want                    any
	}{
		{"none", "", "", nil},
		{"multipart", mw.FormDataContentType(), mp.String(), "p"},
		{"form", "application/x-www-form-urlencoded", form, "p"},
		{"JSON metaData object", "application/json", `{"metaData":{"callback-payload":{"a":[1,2]}}}`, map[string]any{"a": []any{float64(1), float64(2)}}},
		{"JSON metaData string", "application/json", `{"metaData":"{\"callback-payload\":\"p\"}"}`, "p"},
		{"JSON top-level payload", "application/json", `{"callback-payload":7}`, float64(7)},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, cetest.Options{})
			headers := []string{cetest.CallbackHeader + ": " + hook}
			if tc.contentType != "" {
				headers = append(headers, "Content-Type: "+tc.contentType)
			}
			r := e.do("POST", "/bulk/query?q=select%20*%20from%20users", strings.NewReader(tc.body), headers...)
			if r.code != http.StatusOK {
				t.Fatalf("POST bulk/query = %d %s", r.code, r.body)
			}
			ds := e.fake.DeliverCallbacks(t.Context())
			if len(ds) != 1 {
				t.Fatalf("deliveries = %d, want 1", len(ds))
			}
			var body map[string]any
			json.Unmarshal(ds[0].Body, &body)
			if diff := cmp.Diff(tc.want, body["callback-payload"]); diff != "" {
				t.Errorf("callback-payload mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

func TestCallbackOnEveryTerminalStatus(t *testing.T) {
	_, hook := newReceiver(t)
	e := newEnv(t, cetest.Options{SignatureKey: "K", CompletionDelay: time.Minute})
	upload := e.upload("activities", `{"format":"json","callback-payload":{"import":"x"}}`,
		`{"event":"a","properties":{"time":1764000000,"distinct_id":"u"}}`+"\n{}\n", cetest.CallbackHeader+": "+hook)
	e.fake.SetNextJobOutcome(cetest.StatusError, "Mixpanel: rate limited")
	failed := e.startQuery("q=select%20*%20from%20activities", cetest.CallbackHeader+": "+hook)
	cancelled := e.startQuery("q=select%20*%20from%20users", cetest.CallbackHeader+": "+hook)
	r := e.do("POST", "/bulk/download", strings.NewReader(`{"objectName":"users","format":"application/json","notificationUrl":"`+hook+`"}`), "Content-Type: application/json")
	v3 := r.object(t)["id"].(string)
	e.do("PUT", "/bulk/"+cancelled+"/cancel", nil)

	if ds := e.fake.DeliverCallbacks(t.Context()); len(ds) != 1 || ds[0].JobID != cancelled {
		t.Fatalf("deliveries right after cancel = %+v, want the cancelled job's", ds)
	}
	e.clock.Advance(time.Minute)
	got := map[string]map[string]any{}
	for _, d := range append(e.fake.Deliveries(), e.fake.DeliverCallbacks(t.Context())...) {
		var m map[string]any
		json.Unmarshal(d.Body, &m)
		if !verify(d.Body, "K", d.Signature) {
			t.Errorf("delivery for job %s: signature does not verify", d.JobID)
		}
		got[d.JobID] = map[string]any{"status": m["status"], "error": m["error"], "failed": m["recordsFailedCount"], "payload": m["callback-payload"]}
	}
	want := map[string]map[string]any{
		upload:    {"status": "COMPLETED", "error": nil, "failed": float64(1), "payload": map[string]any{"import": "x"}},
		failed:    {"status": "ERROR", "error": "Mixpanel: rate limited", "failed": float64(0), "payload": nil},
		cancelled: {"status": "CANCELLED", "error": nil, "failed": float64(0), "payload": nil},
		v3:        {"status": "COMPLETED", "error": nil, "failed": float64(0), "payload": nil},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("callbacks mismatch (-want +got):\n%s", diff)
	}
}

func TestCallbackRetries(t *testing.T) {
	tests := []struct {
		name     string
		answers  []int
		attempts int
		want     []int // status codes of successive DeliverCallbacks calls
	}{
		{"succeeds first", nil, 3, []int{200, 0, 0}},
		{"retried after 500", []int{500}, 3, []int{500, 200, 0}},
		{"gives up after the attempts", []int{500, 502, 503, 504}, 3, []int{500, 502, 503, 0}},
		{"one attempt only", []int{500}, 1, []int{500, 0}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, hook := newReceiver(t, tc.answers...)
			e := newEnv(t, cetest.Options{CallbackAttempts: tc.attempts})
			e.startQuery("q=select%20*%20from%20users", cetest.CallbackHeader+": "+hook)
			var got []int
			for range tc.want {
				ds := e.fake.DeliverCallbacks(t.Context())
				code := 0
				if len(ds) > 0 {
					code = ds[0].StatusCode
				}
				got = append(got, code)
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("delivery codes mismatch (-want +got):\n%s", diff)
			}
		})
	}
	t.Run("unreachable receiver", func(t *testing.T) {
		e := newEnv(t, cetest.Options{CallbackAttempts: 1})
		e.startQuery("q=select%20*%20from%20users", cetest.CallbackHeader+": http://127.0.0.1:1/cb")
		ds := e.fake.DeliverCallbacks(t.Context())
		if len(ds) != 1 || ds[0].Err == "" || ds[0].StatusCode != 0 {
			t.Errorf("delivery to a closed port = %+v, want a transport error", ds)
		}
	})
}

func TestResendCallback(t *testing.T) {
	rc, hook := newReceiver(t)
	e := newEnv(t, cetest.Options{SignatureKey: "K"})
	id := e.startQuery("q=select%20*%20from%20users", cetest.CallbackHeader+": "+hook)
	e.fake.DeliverCallbacks(t.Context())
	d, err := e.fake.ResendCallback(t.Context(), id)
	if err != nil || !d.OK() || d.Attempt != 2 {
		t.Fatalf("ResendCallback = %+v, %v; want an OK second attempt", d, err)
	}
	got := rc.received()
	if len(got) != 2 || string(got[0].body) != string(got[1].body) ||
		got[0].header.Get("Elements-Webhook-Signature") != got[1].header.Get("Elements-Webhook-Signature") {
		t.Errorf("resent callback differs from the first")
	}
	if _, err := e.fake.ResendCallback(t.Context(), "9999"); err == nil {
		t.Errorf("ResendCallback(unknown job) succeeded")
	}
	noCB := e.startQuery("q=select%20*%20from%20users")
	if _, err := e.fake.ResendCallback(t.Context(), noCB); err == nil {
		t.Errorf("ResendCallback(job without callback) succeeded")
	}
}

// TestAutoCallbacksInMemory runs the whole flow in a synctest bubble: the
// client reaches the emulator through Transport, the emulator's own loop
// completes the job and calls a webhook handler in memory, and time is fake.
func TestAutoCallbacksInMemory(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		rc := &receiver{}
		webhook := &http.Client{Transport: roundTripFunc(func(r *http.Request) (*http.Response, error) {
			w := httptest.NewRecorder()
			rc.ServeHTTP(w, r)
			return w.Result(), nil
		})}
		f := cetest.NewFake(cetest.Options{
			CompletionDelay: 30 * time.Second, TickInterval: time.Second,
			SignatureKey: "K", CallbackClient: webhook,
		})
		f.Start()
		defer f.Close()
		f.SeedGenerated("users", cetest.SampleUsers(1, 10))
		client := &http.Client{Transport: f.Transport()}

		req, _ := http.NewRequest("POST", cetest.InMemoryBaseURL+"/hubs/general/bulk/query?q=select%20*%20from%20users", nil)
		req.Header.Set("Authorization", authHeader)
		req.Header.Set(cetest.CallbackHeader, "https://webhook.test/callbacks/ce?job=j1")
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		start := time.Now()

		time.Sleep(29 * time.Second)
		synctest.Wait()
		if n := len(rc.received()); n != 0 {
			t.Fatalf("callbacks after 29s = %d, want 0", n)
		}
		time.Sleep(2 * time.Second)
		synctest.Wait()
		got := rc.received()
		if len(got) != 1 || !verify(got[0].body, "K", got[0].header.Get("Elements-Webhook-Signature")) {
			t.Fatalf("callbacks after 31s = %d (signed correctly: %v), want 1 signed", len(got), len(got) == 1)
		}
		var m map[string]any
		json.Unmarshal(got[0].body, &m)
		if m["status"] != "COMPLETED" || m["recordsCount"] != float64(10) {
			t.Errorf("callback = %s, want COMPLETED with 10 records", got[0].body)
		}
		if d := f.Deliveries()[0].At.Sub(start); d < 30*time.Second || d > 31*time.Second {
			t.Errorf("callback sent %v after creation, want within the tick after 30s", d)
		}
	})
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

func TestNewServerAutoCallbacks(t *testing.T) {
	got := make(chan []byte, 1)
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		got <- b
	}))
	defer hook.Close()
	srv, _ := cetest.NewServer(t, cetest.Options{AutoCallbacks: true, TickInterval: 5 * time.Millisecond})
	req, _ := http.NewRequestWithContext(t.Context(), "POST", cetest.BaseURL(srv)+"/bulk/query?q=select%20*%20from%20users", nil)
	req.Header.Set("Authorization", authHeader)
	req.Header.Set(cetest.CallbackHeader, hook.URL)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	// Nobody polls: the emulator's own loop completes the job and calls back.
	select {
	case b := <-got:
		if !strings.Contains(string(b), `"status":"COMPLETED"`) {
			t.Errorf("callback = %s, want a COMPLETED job", b)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no callback within 10s")
	}
}
