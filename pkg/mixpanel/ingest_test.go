package mixpanel

import (
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"iter"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// event returns an /import event whose $insert_id derives from i.
func event(i int, extra string) json.RawMessage {
	return json.RawMessage(fmt.Sprintf(`{"event":"e%d","properties":{"time":1764115200,"distinct_id":"u%d","$insert_id":"id-%d"%s}}`, i, i, i, extra))
}

// seq yields records with positions first, first+1, ...
func seq(first int64, data ...json.RawMessage) iter.Seq2[Record, error] {
	return func(yield func(Record, error) bool) {
		for i, d := range data {
			if !yield(Record{Pos: first + int64(i), Data: d}, nil) {
				return
			}
		}
	}
}

// received is one decoded request to /import or /engage.
type received struct {
	query    url.Values
	encoding string
	rawBytes int
	records  []json.RawMessage
}

// decodeBatch checks the common headers and decodes the JSON array body.
func decodeBatch(t *testing.T, r *http.Request) received {
	t.Helper()
	checkAuth(t, r)
	if got := r.Header.Get("Content-Type"); got != "application/json" {
		t.Errorf("Content-Type = %q, want application/json", got)
	}
	var body io.Reader = r.Body
	enc := r.Header.Get("Content-Encoding")
	if enc == "gzip" {
		zr, err := gzip.NewReader(r.Body)
		if err != nil {
			t.Fatalf("gzip: %v", err)
		}
		body = zr
	}
	raw, err := io.ReadAll(body)
	if err != nil {
		t.Fatal(err)
	}
	var recs []json.RawMessage
	if err := json.Unmarshal(raw, &recs); err != nil {
		t.Fatalf("body is not a JSON array: %v", err)
	}
	return received{query: r.URL.Query(), encoding: enc, rawBytes: len(raw), records: recs}
}

// importServer answers /import with answer(batch) and records the batches.
type importServer struct {
	t      *testing.T
	mu     sync.Mutex
	got    []received
	answer func(n int, rec received) (int, string)
}

func (s *importServer) handle(w http.ResponseWriter, r *http.Request) {
	rec := decodeBatch(s.t, r)
	s.mu.Lock()
	s.got = append(s.got, rec)
	n := len(s.got)
	s.mu.Unlock()
	status, body := 200, fmt.Sprintf(`{"code":200,"num_records_imported":%d,"status":"OK"}`, len(rec.records))
	if s.answer != nil {
		status, body = s.answer(n, rec)
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	io.WriteString(w, body)
}

func TestImportBatchesByCount(t *testing.T) {
	c, mux, _, _ := setup(t)
	srv := &importServer{t: t}
	mux.HandleFunc("POST /import", srv.handle)
	var data []json.RawMessage
	for i := range 4500 {
		data = append(data, event(i, ""))
	}
	var batches []BatchResult
	sum, err := c.Import(t.Context(), seq(1, data...), IngestOptions{OnBatch: func(r *BatchResult) error {
		batches = append(batches, *r)
		return nil
	}})
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(*sum, Summary{Batches: 3, Records: 4500, Imported: 4500}); diff != "" {
		t.Errorf("summary (-got +want):\n%s", diff)
	}
	sizes := map[int]bool{}
	seen := map[string]bool{}
	for _, rec := range srv.got {
		sizes[len(rec.records)] = true
		if rec.encoding != "gzip" {
			t.Errorf("Content-Encoding = %q, want gzip", rec.encoding)
		}
		if diff := cmp.Diff(rec.query, url.Values{"strict": {"1"}, "project_id": {"2195193"}}); diff != "" {
			t.Errorf("query (-got +want):\n%s", diff)
		}
		for _, r := range rec.records {
			seen[string(r)] = true
		}
	}
	if diff := cmp.Diff(sizes, map[int]bool{2000: true, 500: true}); diff != "" {
		t.Errorf("batch sizes (-got +want):\n%s", diff)
	}
	if len(seen) != 4500 {
		t.Errorf("distinct events received = %d, want 4500", len(seen))
	}
	var covered int
	for _, b := range batches {
		covered += b.Records
		if b.Last-b.First+1 != int64(b.Records) {
			t.Errorf("batch %d..%d holds %d records", b.First, b.Last, b.Records)
		}
	}
	if covered != 4500 {
		t.Errorf("OnBatch covered %d records, want 4500", covered)
	}
}

func TestImportBatchesByBytes(t *testing.T) {
	c, mux, _, _ := setup(t, WithConcurrency(1))
	srv := &importServer{t: t}
	mux.HandleFunc("POST /import", srv.handle)
	pad := `,"pad":"` + strings.Repeat("x", 100_000) + `"`
	var data []json.RawMessage
	for i := range 50 {
		data = append(data, event(i, pad))
	}
	if _, err := c.Import(t.Context(), seq(0, data...), IngestOptions{}); err != nil {
		t.Fatal(err)
	}
	var counts []int
	for _, rec := range srv.got {
		counts = append(counts, len(rec.records))
		if rec.rawBytes > MaxBatchBytes {
			t.Errorf("batch of %d uncompressed bytes, over %d", rec.rawBytes, MaxBatchBytes)
		}
	}
	if diff := cmp.Diff(counts, []int{20, 20, 10}); diff != "" {
		t.Errorf("records per batch (-got +want):\n%s", diff)
	}
}

func TestImportFailedRecords(t *testing.T) {
	tests := []struct {
		name         string
		fixture      string
		wantImported int64
		want         []RecordError
	}{
		{
			name: "guide spelling $insert_id", fixture: "import-400-guide.json", wantImported: 1,
			want: []RecordError{
				{Pos: 10, Index: 0, InsertID: "8a66058c-a56d-4ef6-8123-28b7c9f7e82f", Field: "properties.time", Message: "'properties.time' is invalid: must be specified as seconds since epoch"},
				{Pos: 12, Index: 2, InsertID: "29fc2962-6d9c-455d-95ad-95b84f09b9e4", Field: "properties.utm_source", Message: "properties.utm_source is invalid: string should be valid utf8"},
			},
		},
		{
			name: "OpenAPI spelling insert_id", fixture: "import-400-openapi.json", wantImported: 2,
			want: []RecordError{
				{Pos: 11, Index: 1, InsertID: "13c0b661-f48b-51cd-ba54-97c5999169c0", Field: "properties.time", Message: "'properties.time' is invalid: must be specified as seconds since epoch"},
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, mux, sleeps, _ := setup(t)
			srv := &importServer{t: t, answer: func(int, received) (int, string) { return 400, string(fixture(t, tt.fixture)) }}
			mux.HandleFunc("POST /import", srv.handle)
			res, err := c.ImportBatch(t.Context(), []Record{{10, event(0, "")}, {11, event(1, "")}, {12, event(2, "")}})
			if err != nil {
				t.Fatal(err)
			}
			want := &BatchResult{First: 10, Last: 12, Records: 3, Sent: 3, Imported: tt.wantImported, Failed: tt.want}
			if diff := cmp.Diff(res, want); diff != "" {
				t.Errorf("result (-got +want):\n%s", diff)
			}
			if len(srv.got) != 1 || len(sleeps.recorded()) != 0 {
				t.Errorf("a 400 was retried: %d requests, waits %v", len(srv.got), sleeps.recorded())
			}
		})
	}
}

func TestImportFailuresMapAcrossBatches(t *testing.T) {
	c, mux, _, _ := setup(t, WithConcurrency(3))
	srv := &importServer{t: t, answer: func(_ int, rec received) (int, string) {
		var first struct {
			Properties struct {
				InsertID string `json:"$insert_id"`
			} `json:"properties"`
		}
		json.Unmarshal(rec.records[0], &first)
		return 400, fmt.Sprintf(`{"code":400,"error":"some data points in the request failed validation","failed_records":[{"index":0,"$insert_id":%q,"field":"properties.time","message":"bad time"}],"num_records_imported":%d,"status":"Bad Request"}`, first.Properties.InsertID, len(rec.records)-1)
	}}
	mux.HandleFunc("POST /import", srv.handle)
	var data []json.RawMessage
	for i := range 7 {
		data = append(data, event(i, ""))
	}
	sum, err := c.Import(t.Context(), seq(100, data...), IngestOptions{MaxRecords: 2})
	if err != nil {
		t.Fatal(err)
	}
	got := map[int64]string{}
	for _, f := range sum.Failures {
		got[f.Pos] = f.InsertID
	}
	want := map[int64]string{100: "id-0", 102: "id-2", 104: "id-4", 106: "id-6"}
	if diff := cmp.Diff(got, want); diff != "" {
		t.Errorf("failures by position (-got +want):\n%s", diff)
	}
	if sum.Imported != 3 || sum.Records != 7 || sum.Batches != 4 {
		t.Errorf("summary = %+v, want 4 batches, 7 records, 3 imported", sum)
	}
}

func TestImportLocalRefusals(t *testing.T) {
	c, mux, _, _ := setup(t)
	srv := &importServer{t: t}
	mux.HandleFunc("POST /import", srv.handle)
	huge := event(9, `,"pad":"`+strings.Repeat("x", MaxBatchBytes)+`"`)
	sum, err := c.Import(t.Context(), seq(1, event(0, ""), json.RawMessage(`{"event":`), json.RawMessage(`[1]`), huge, event(4, "")), IngestOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var got []int64
	for _, f := range sum.Failures {
		if !f.Local || f.Index != -1 {
			t.Errorf("failure %+v is not a local refusal", f)
		}
		got = append(got, f.Pos)
	}
	if diff := cmp.Diff(got, []int64{2, 3, 4}); diff != "" {
		t.Errorf("refused positions (-got +want):\n%s", diff)
	}
	if len(srv.got) != 1 || len(srv.got[0].records) != 2 || sum.Imported != 2 || sum.Records != 5 {
		t.Errorf("sent %v, summary %+v; want one batch of the 2 valid events", srv.got, sum)
	}
}

func TestImportErrors(t *testing.T) {
	tests := []struct {
		name      string
		statuses  []int
		fixtures  []string
		wantCalls int
		wantIs    error // nil: success
		wantWaits []time.Duration
	}{
		{"401 not retried", []int{401}, []string{"import-401.json"}, 1, ErrUnauthorized, nil},
		{"413 not retried", []int{413}, []string{"import-413.json"}, 1, ErrTooLarge, nil},
		{"400 without failed_records", []int{400}, []string{"import-400-body.json"}, 1, ErrBadRequest, nil},
		{"429 then ok", []int{429, 200}, []string{"import-429.json", "import-200.json"}, 2, nil, []time.Duration{2 * time.Second}},
		{"502 503 then ok", []int{502, 503, 200}, []string{"import-429.json", "import-429.json", "import-200.json"}, 3, nil, []time.Duration{2 * time.Second, 4 * time.Second}},
		{"429 until spent", []int{429, 429, 429, 429}, []string{"import-429.json", "import-429.json", "import-429.json", "import-429.json"}, 4, ErrRateLimited, []time.Duration{2 * time.Second, 4 * time.Second, 8 * time.Second}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, mux, sleeps, logs := setup(t)
			srv := &importServer{t: t, answer: func(n int, _ received) (int, string) {
				return tt.statuses[n-1], string(fixture(t, tt.fixtures[n-1]))
			}}
			mux.HandleFunc("POST /import", srv.handle)
			sum, err := c.Import(t.Context(), seq(7, event(0, ""), event(1, ""), event(2, "")), IngestOptions{})
			if tt.wantIs == nil {
				if err != nil {
					t.Fatal(err)
				}
				if sum.Imported != 3 {
					t.Errorf("imported = %d, want 3", sum.Imported)
				}
			} else {
				var be *BatchError
				var apiErr *APIError
				if !errors.As(err, &be) || !errors.As(err, &apiErr) || !errors.Is(err, tt.wantIs) {
					t.Fatalf("err = %v, want a *BatchError wrapping an *APIError matching %v", err, tt.wantIs)
				}
				if be.First != 7 || be.Last != 9 || be.Records != 3 || sum.Batches != 0 {
					t.Errorf("BatchError %+v, summary %+v; want positions 7..9 and no answered batch", be, sum)
				}
			}
			if len(srv.got) != tt.wantCalls {
				t.Errorf("requests = %d, want %d", len(srv.got), tt.wantCalls)
			}
			for _, rec := range srv.got[1:] {
				if diff := cmp.Diff(rec.records, srv.got[0].records); diff != "" {
					t.Errorf("a retry sent another body (-got +want):\n%s", diff)
				}
			}
			if diff := cmp.Diff(sleeps.recorded(), tt.wantWaits); diff != "" {
				t.Errorf("waits (-got +want):\n%s", diff)
			}
			if len(tt.wantWaits) > 0 && !strings.Contains(logs.String(), "path=import") {
				t.Errorf("retry not logged: %s", logs)
			}
		})
	}
}

func TestImportConcurrency(t *testing.T) {
	const n = 4
	c, mux, _, _ := setup(t, WithConcurrency(n))
	var inflight, peak atomic.Int32
	release := make(chan struct{})
	var once sync.Once
	srv := &importServer{t: t}
	mux.HandleFunc("POST /import", func(w http.ResponseWriter, r *http.Request) {
		cur := inflight.Add(1)
		defer inflight.Add(-1)
		for {
			p := peak.Load()
			if cur <= p || peak.CompareAndSwap(p, cur) {
				break
			}
		}
		if cur >= n {
			once.Do(func() { close(release) })
		}
		select {
		case <-release:
		case <-time.After(10 * time.Second):
			t.Errorf("only %d batches in flight", inflight.Load())
		}
		srv.handle(w, r)
	})
	var data []json.RawMessage
	for i := range 10 * n {
		data = append(data, event(i, ""))
	}
	sum, err := c.Import(t.Context(), seq(0, data...), IngestOptions{MaxRecords: 5})
	if err != nil {
		t.Fatal(err)
	}
	if got := peak.Load(); got != n {
		t.Errorf("peak batches in flight = %d, want %d", got, n)
	}
	if sum.Batches != 2*n || sum.Imported != int64(len(data)) {
		t.Errorf("summary %+v", sum)
	}
}

func TestImportStops(t *testing.T) {
	t.Run("OnBatch error", func(t *testing.T) {
		c, mux, _, _ := setup(t, WithConcurrency(1))
		srv := &importServer{t: t}
		mux.HandleFunc("POST /import", srv.handle)
		stop := errors.New("checkpoint failed")
		var data []json.RawMessage
		for i := range 10 {
			data = append(data, event(i, ""))
		}
		_, err := c.Import(t.Context(), seq(0, data...), IngestOptions{MaxRecords: 2, OnBatch: func(*BatchResult) error { return stop }})
		if !errors.Is(err, stop) {
			t.Fatalf("err = %v, want %v", err, stop)
		}
		if len(srv.got) > 3 {
			t.Errorf("%d batches sent after OnBatch failed", len(srv.got))
		}
	})
	t.Run("records error", func(t *testing.T) {
		c, mux, _, _ := setup(t)
		srv := &importServer{t: t}
		mux.HandleFunc("POST /import", srv.handle)
		bad := errors.New("line 3: unexpected EOF")
		records := func(yield func(Record, error) bool) {
			if yield(Record{Pos: 1, Data: event(1, "")}, nil) {
				yield(Record{}, bad)
			}
		}
		_, err := c.Import(t.Context(), records, IngestOptions{})
		if !errors.Is(err, bad) {
			t.Fatalf("err = %v, want %v", err, bad)
		}
		if len(srv.got) != 0 {
			t.Errorf("a partial batch was sent after the records failed")
		}
	})
}

func TestUpdateProfilesWire(t *testing.T) {
	c, mux, _, _ := setup(t)
	srv := &importServer{t: t, answer: func(int, received) (int, string) { return 200, string(fixture(t, "engage-verbose-ok.json")) }}
	mux.HandleFunc("POST /engage", srv.handle)
	sum, err := c.UpdateProfiles(t.Context(), seq(1,
		json.RawMessage(`{"$distinct_id":"13793","$set":{"$email":"user1@mail.com"}}`),
		json.RawMessage(`{"$token":"tok-TOKEN-c0ffee1234","$distinct_id":"13794","$add":{"Coins Gathered":13}}`),
		json.RawMessage(` {  } `),
		json.RawMessage(`{"$token":"another-project","$distinct_id":"x","$set":{}}`),
		json.RawMessage(`{"$distinct_id":"13795","$unset":["$email"]}`),
	), IngestOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(srv.got) != 1 {
		t.Fatalf("requests = %d, want 1", len(srv.got))
	}
	rec := srv.got[0]
	if rec.encoding != "" {
		t.Errorf("Content-Encoding = %q, want none on /engage", rec.encoding)
	}
	if diff := cmp.Diff(rec.query, url.Values{"strict": {"1"}, "verbose": {"1"}, "ip": {"0"}, "project_id": {"2195193"}}); diff != "" {
		t.Errorf("query (-got +want):\n%s", diff)
	}
	var got []map[string]any
	for _, r := range rec.records {
		var m map[string]any
		if err := json.Unmarshal(r, &m); err != nil {
			t.Fatal(err)
		}
		got = append(got, m)
	}
	tok := testCreds.ProjectToken
	want := []map[string]any{
		{"$token": tok, "$distinct_id": "13793", "$set": map[string]any{"$email": "user1@mail.com"}},
		{"$token": tok, "$distinct_id": "13794", "$add": map[string]any{"Coins Gathered": 13.0}},
		{"$token": tok},
		{"$token": tok, "$distinct_id": "13795", "$unset": []any{"$email"}},
	}
	if diff := cmp.Diff(got, want); diff != "" {
		t.Errorf("updates sent (-got +want):\n%s", diff)
	}
	if len(sum.Failures) != 1 || sum.Failures[0].Pos != 4 || !sum.Failures[0].Local || sum.Imported != 4 {
		t.Errorf("summary %+v; want the foreign $token refused locally at position 4 and 4 imported", sum)
	}
	for _, f := range sum.Failures {
		assertNoSecrets(t, "failure", fmt.Sprint(f))
	}
}

func TestUpdateProfilesNeedsToken(t *testing.T) {
	creds := testCreds
	creds.ProjectToken = ""
	c, err := NewClient(creds)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.UpdateProfileBatch(t.Context(), []Record{{1, json.RawMessage(`{"$distinct_id":"a","$set":{}}`)}}); err == nil {
		t.Error("UpdateProfileBatch without a project token succeeded")
	}
}

func TestUpdateProfileAnswers(t *testing.T) {
	updates := []Record{
		{21, json.RawMessage(`{"$distinct_id":"13793","$set":{"a":1}}`)},
		{22, json.RawMessage(`{"$distinct_id":"13794","$add":{"n":"x"}}`)},
		{23, json.RawMessage(`{"$distinct_id":"13795","$set":{"b":2}}`)},
	}
	all := func(msg string) []RecordError {
		return []RecordError{{Pos: 21, Index: 0, Message: msg}, {Pos: 22, Index: 1, Message: msg}, {Pos: 23, Index: 2, Message: msg}}
	}
	tests := []struct {
		name   string
		status int
		body   string
		want   *BatchResult
		wantIs error
	}{
		{"bare 1", 200, "1", &BatchResult{First: 21, Last: 23, Records: 3, Sent: 3, Imported: 3}, nil},
		{"bare 0 is a failure", 200, "0\n", &BatchResult{First: 21, Last: 23, Records: 3, Sent: 3, Failed: all("Mixpanel accepted none of the batch (answer 0)")}, nil},
		{"verbose ok", 200, string(fixture(t, "engage-verbose-ok.json")), &BatchResult{First: 21, Last: 23, Records: 3, Sent: 3, Imported: 3}, nil},
		{"verbose failure", 200, string(fixture(t, "engage-verbose-fail.json")), &BatchResult{First: 21, Last: 23, Records: 3, Sent: 3, Failed: all("data, missing or empty")}, nil},
		{"strict per-record failure", 400, string(fixture(t, "engage-400-strict.json")), &BatchResult{
			First: 21, Last: 23, Records: 3, Sent: 3, Imported: 2,
			Failed: []RecordError{{Pos: 22, Index: 1, DistinctID: "13794", Field: "$add", Message: "$add values must be numeric"}},
		}, nil},
		{"401", 401, string(fixture(t, "engage-401.json")), nil, ErrUnauthorized},
		{"403", 403, `{"error":"forbidden","status":"error"}`, nil, ErrForbidden},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, mux, _, _ := setup(t)
			srv := &importServer{t: t, answer: func(int, received) (int, string) { return tt.status, tt.body }}
			mux.HandleFunc("POST /engage", srv.handle)
			res, err := c.UpdateProfileBatch(t.Context(), updates)
			if tt.wantIs != nil {
				if !errors.Is(err, tt.wantIs) {
					t.Fatalf("err = %v, want %v", err, tt.wantIs)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(res, tt.want); diff != "" {
				t.Errorf("result (-got +want):\n%s", diff)
			}
		})
	}
}

// failFirstDial is a transport whose first round trip fails as a refused
// connection would, before anything is written.
type failFirstDial struct {
	base  http.RoundTripper
	calls atomic.Int32
}

func (f *failFirstDial) RoundTrip(r *http.Request) (*http.Response, error) {
	if f.calls.Add(1) == 1 {
		return nil, &net.OpError{Op: "dial", Net: "tcp", Err: errors.New("connection refused")}
	}
	return f.base.RoundTrip(r)
}

func TestUpdateProfilesNeverResentBlindly(t *testing.T) {
	tests := []struct {
		name        string
		handler     func(n int, w http.ResponseWriter, r *http.Request)
		dialFails   bool
		wantCalls   int
		wantUnknown bool
	}{
		{
			name: "connection cut after the body went",
			handler: func(_ int, w http.ResponseWriter, r *http.Request) {
				io.Copy(io.Discard, r.Body)
				conn, _, err := w.(http.Hijacker).Hijack()
				if err == nil {
					conn.Close()
				}
			},
			wantCalls: 1, wantUnknown: true,
		},
		{
			name:      "502 from a gateway",
			handler:   func(_ int, w http.ResponseWriter, r *http.Request) { w.WriteHeader(502) },
			wantCalls: 1, wantUnknown: true,
		},
		{
			name: "429 is a refusal: resent",
			handler: func(n int, w http.ResponseWriter, r *http.Request) {
				if n == 1 {
					w.WriteHeader(429)
					w.Write(fixture(t, "import-429.json"))
					return
				}
				w.Write([]byte("1"))
			},
			wantCalls: 2,
		},
		{
			name: "503 is a refusal: resent",
			handler: func(n int, w http.ResponseWriter, r *http.Request) {
				if n == 1 {
					w.WriteHeader(503)
					return
				}
				w.Write([]byte("1"))
			},
			wantCalls: 2,
		},
		{
			name:      "never connected: resent",
			handler:   func(_ int, w http.ResponseWriter, r *http.Request) { w.Write([]byte("1")) },
			dialFails: true, wantCalls: 1,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, mux, _, _ := setup(t)
			if tt.dialFails {
				ft := &failFirstDial{base: http.DefaultTransport}
				c.httpClient = &http.Client{Transport: ft}
				defer func() {
					if ft.calls.Load() != 2 {
						t.Errorf("round trips = %d, want 2", ft.calls.Load())
					}
				}()
			}
			var calls atomic.Int32
			mux.HandleFunc("POST /engage", func(w http.ResponseWriter, r *http.Request) {
				tt.handler(int(calls.Add(1)), w, r)
			})
			sum, err := c.UpdateProfiles(t.Context(), seq(1, json.RawMessage(`{"$distinct_id":"a","$add":{"n":1}}`)), IngestOptions{})
			if got := int(calls.Load()); got != tt.wantCalls {
				t.Errorf("requests = %d, want %d", got, tt.wantCalls)
			}
			var unknown *UnknownOutcomeError
			if errors.As(err, &unknown) != tt.wantUnknown {
				t.Fatalf("err = %v, want an *UnknownOutcomeError: %v", err, tt.wantUnknown)
			}
			if tt.wantUnknown {
				var be *BatchError
				if !errors.As(err, &be) || be.First != 1 || be.Last != 1 {
					t.Errorf("err = %v, want a *BatchError for position 1", err)
				}
				return
			}
			if err != nil || sum.Imported != 1 {
				t.Errorf("summary %+v, err %v; want 1 imported", sum, err)
			}
		})
	}
}

// An /import batch whose answer is lost is sent again: Mixpanel dedupes
// events on $insert_id, so a second copy is harmless (contrast with
// TestUpdateProfilesNeverResentBlindly).
func TestImportResentAfterLostAnswer(t *testing.T) {
	c, mux, sleeps, _ := setup(t)
	srv := &importServer{t: t}
	var calls atomic.Int32
	mux.HandleFunc("POST /import", func(w http.ResponseWriter, r *http.Request) {
		if calls.Add(1) == 1 {
			io.Copy(io.Discard, r.Body)
			if conn, _, err := w.(http.Hijacker).Hijack(); err == nil {
				conn.Close()
			}
			return
		}
		srv.handle(w, r)
	})
	sum, err := c.Import(t.Context(), seq(1, event(1, ""), event(2, "")), IngestOptions{})
	if err != nil || sum.Imported != 2 {
		t.Fatalf("summary %+v, err %v; want 2 imported", sum, err)
	}
	if calls.Load() != 2 || len(sleeps.recorded()) != 1 {
		t.Errorf("requests = %d, waits %v; want 2 requests after one wait", calls.Load(), sleeps.recorded())
	}
}

// A profile batch whose context ended before it was sent is a plain
// context error: nothing went out, so its outcome is known.
func TestUpdateProfilesCanceledBeforeSending(t *testing.T) {
	c, mux, _, _ := setup(t)
	var calls atomic.Int32
	mux.HandleFunc("POST /engage", func(w http.ResponseWriter, r *http.Request) { calls.Add(1) })
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	_, err := c.UpdateProfileBatch(ctx, []Record{{1, json.RawMessage(`{"$distinct_id":"a","$add":{"n":1}}`)}})
	var unknown *UnknownOutcomeError
	if !errors.Is(err, context.Canceled) || errors.As(err, &unknown) || calls.Load() != 0 {
		t.Errorf("err = %v after %d requests, want a plain context.Canceled and none sent", err, calls.Load())
	}
}
