package main

import (
	"encoding/json"
	"fmt"
	"maps"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/cebulk/cebulk/internal/awstest"
	"github.com/cebulk/cebulk/internal/importer"
	"github.com/cebulk/cebulk/internal/lambdatest"
	"github.com/cebulk/cebulk/internal/mpdirect"
	"github.com/cebulk/cebulk/internal/mptest"
	"github.com/cebulk/cebulk/internal/s3stream"
)

// mpE2E runs the real ImportFunction bootstrap under the Lambda runtime
// emulator with BACKEND=mixpanel: moto for S3 and Secrets Manager behind
// the proxy that enforces template.yaml's roles, and the Mixpanel emulator
// (mptest) at MIXPANEL_BASE_URL. Mixpanel answers every batch at once, so
// nothing calls back: an import is finished when its last invocation ends.
type mpE2E struct {
	*e2e
	mp *mptest.Fake
	// holdUntil, when set (Unix nanoseconds), delays the answer of every
	// /engage request that arrives before it until that instant: the
	// emulator serves the request at once, the answer waits.
	holdUntil atomic.Int64
}

type mpE2EOptions struct {
	timeout      time.Duration // the function timeout (60 s when 0)
	chunkRecords int           // IMPORT_CHUNK_RECORDS
}

func startMixpanelE2E(t *testing.T, o mpE2EOptions) *mpE2E {
	t.Helper()
	awstest.Endpoint(t)
	bootstrap := lambdatest.Build(t, "./functions/import")
	e := &mpE2E{e2e: &e2e{clock: &e2eClock{now: time.Now()}, s3: awstest.S3(t)}}
	e.mp = mptest.NewFake(mptest.Options{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		until := time.Unix(0, e.holdUntil.Load())
		if r.URL.Path != "/engage" || !time.Now().Before(until) {
			e.mp.ServeHTTP(w, r)
			return
		}
		rec := httptest.NewRecorder()
		e.mp.ServeHTTP(rec, r)
		select {
		case <-time.After(time.Until(until)):
		case <-r.Context().Done():
			return
		}
		maps.Copy(w.Header(), rec.Header())
		w.WriteHeader(rec.Code)
		_, _ = w.Write(rec.Body.Bytes())
	}))
	t.Cleanup(srv.Close)
	// One secret for both backends: the Mixpanel one needs the service
	// account, the project id and (for profile updates) the project token.
	secret := awstest.NewSecret(t, fmt.Sprintf(`{"serviceAccountUser":%q,"serviceAccountSecret":%q,"projectId":%q,"projectToken":%q}`,
		mptest.DefaultUsername, mptest.DefaultSecret, mptest.DefaultProjectID, mptest.DefaultToken))
	st := lambdatest.NewStack(t, lambdatest.StackOptions{SecretARN: secret})
	e.stack, e.bucket, e.invoke, e.name = st, st.Bucket, st.Invoke, st.FunctionName("import")
	invokeSrv := httptest.NewServer(st.Invoke)
	t.Cleanup(invokeSrv.Close)
	e.endpoint = invokeSrv.URL
	if o.timeout == 0 {
		o.timeout = 60 * time.Second
	}
	e.fn = st.Start(t, "ImportFunction", bootstrap, lambdatest.Options{
		Timeout: o.timeout,
		Env: map[string]string{
			"BACKEND":              "mixpanel",
			"MIXPANEL_BASE_URL":    srv.URL,
			"IMPORT_CHUNK_RECORDS": strconv.Itoa(o.chunkRecords),
			"LOG_LEVEL":            "debug",
		},
	})
	st.Invoke.Register(e.name, e.fn.Function)
	return e
}

// ceErrorLines reads ce-errors.jsonl: each failed record's source line and
// the error element the backend gave for it.
type ceErrorLine struct {
	Line  int `json:"line"`
	Error struct {
		Index      *int64 `json:"index"`
		Field      string `json:"field"`
		Message    string `json:"message"`
		DistinctID string `json:"$distinct_id"`
		Source     string `json:"source"`
	} `json:"error"`
}

func (e *mpE2E) ceErrors(t *testing.T, key string) []ceErrorLine {
	t.Helper()
	var out []ceErrorLine
	for l := range strings.SplitSeq(strings.TrimSpace(string(e.object(t, "reports/"+key+"/ce-errors.jsonl"))), "\n") {
		if l == "" {
			continue
		}
		var c ceErrorLine
		if err := json.Unmarshal([]byte(l), &c); err != nil {
			t.Fatalf("ce-errors.jsonl line %q: %v", l, err)
		}
		out = append(out, c)
	}
	return out
}

// importedIDs returns the distinct id of every event Mixpanel stored.
func (e *mpE2E) importedIDs(t *testing.T) []string {
	t.Helper()
	var ids []string
	for _, raw := range e.mp.Imported() {
		var ev struct {
			Properties struct {
				DistinctID string `json:"distinct_id"`
			} `json:"properties"`
		}
		if err := json.Unmarshal(raw, &ev); err != nil {
			t.Fatal(err)
		}
		ids = append(ids, ev.Properties.DistinctID)
	}
	slices.Sort(ids)
	return ids
}

// updatedIDs returns the distinct id of every profile update Mixpanel
// applied, once per application.
func (e *mpE2E) updatedIDs(t *testing.T) []string {
	t.Helper()
	var ids []string
	for _, raw := range e.mp.Updates() {
		var u struct {
			ID string `json:"$distinct_id"`
		}
		if err := json.Unmarshal(raw, &u); err != nil {
			t.Fatal(err)
		}
		ids = append(ids, u.ID)
	}
	slices.Sort(ids)
	return ids
}

func statuses(reqs []mptest.Request) []int {
	var out []int
	for _, r := range reqs {
		out = append(out, r.Status)
	}
	return out
}

func sortedIDs(prefix string, n int) []string {
	out := ids(prefix, n)
	slices.Sort(out)
	return out
}

// Rows our validation rejects are in rejects.jsonl.gz, rows Mixpanel's
// strict validation refuses (which ours lets through) in ce-errors.jsonl,
// both with their source lines; every valid row reaches Mixpanel exactly
// once, through a 429 on the first request of each API.
func TestMixpanelE2EMixedQualityImport(t *testing.T) {
	e := startMixpanelE2E(t, mpE2EOptions{chunkRecords: 3})
	tests := []struct {
		name, key, object string
		file              []string
		wantIDs           []string // what Mixpanel holds afterwards
		wantRejects       []int    // our validation's refusals
		wantMixpanel      []int    // Mixpanel's refusals
		route             mptest.Route
	}{
		{
			name: "activities", key: "imports/activities/mp-mixed.jsonl", object: "activities", route: mptest.RouteImport,
			file: []string{
				`{"event":"Signed Up","properties":{"time":1764028801,"distinct_id":"good-1","$insert_id":"ins-0001"}}`,
				`{"event":"Purchase","properties":{"distinct_id":"bad-no-time"}}`,
				// A property nested 3 levels deep inside its value: our rules
				// (a property whose value is an object is level 1) allow it;
				// Mixpanel's (properties is level 1) refuse it.
				`{"event":"Purchase","properties":{"time":1764028803,"distinct_id":"mp-nested","cart":{"item":{"sku":{"id":"a-1"}}}}}`,
				`{"event":"Page View","properties":{"time":1764028804,"distinct_id":"good-2"}}`,
				`{"event":"Purchase","properties":{"time":1764028805,"distinct_id":"anonymous"}}`,
				`{"event":"Page View","properties":{"time":1764028806,"distinct_id":"good-3"}}`,
				`{"event":"Page View","properties":{"time":1764028807,"distinct_id":"mp-nested-array","grid":[[["x"]]]}}`,
				`{"event":"Page View","properties":{"time":"2026-11-25T10:00:00+01:00","distinct_id":"good-4"}}`,
			},
			wantIDs: sortedIDs("good", 4), wantRejects: []int{2, 5}, wantMixpanel: []int{3, 7},
		},
		{
			name: "users", key: "imports/users/mp-mixed.jsonl", object: "users", route: mptest.RouteEngage,
			file: []string{
				`{"$distinct_id":"good-1","$set":{"$email":"one@example.com","credits":150}}`,
				`{"$set":{"$email":"nobody@example.com"}}`,
				// Two operations in one update: our rules allow it (the
				// /engage schema lists them as fields of one object);
				// Mixpanel refuses it.
				`{"$distinct_id":"mp-two-ops","$set":{"plan":"pro"},"$add":{"credits":1}}`,
				`{"$distinct_id":"good-2","$set_once":{"first_seen":"2026-01-02"}}`,
				// $latitude: an option our rules accept, not one Mixpanel's
				// /engage knows.
				`{"$distinct_id":"mp-latitude","$set":{"plan":"pro"},"$latitude":48.85}`,
				`{"$distinct_id":"bad-add","$add":{"credits":"ten"}}`,
				`{"$distinct_id":"good-3","$add":{"credits":10}}`,
				`{"$distinct_id":"good-4","$unset":["trial"]}`,
			},
			wantIDs: sortedIDs("good", 4), wantRejects: []int{2, 6}, wantMixpanel: []int{3, 5},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e.mp.Reset()
			// Retry-After keeps the wait short: the client waits it plus
			// 1–5 s of jitter.
			e.mp.FailNext(tc.route, http.StatusTooManyRequests, "1")
			data := []byte(strings.Join(tc.file, "\n") + "\n")
			res := e.invokeFn(t, e.put(t, tc.key, data, nil))
			if len(res) != 1 || res[0].Status != importer.StatusPartial {
				t.Fatalf("invocation = %+v, want PARTIAL at once (Mixpanel answers synchronously)", res)
			}
			got := e.importedIDs(t)
			if tc.object == "users" {
				got = e.updatedIDs(t)
			}
			if diff := cmp.Diff(tc.wantIDs, got); diff != "" {
				t.Errorf("records in Mixpanel (-want +got):\n%s", diff)
			}
			if accepted, dupes, _ := e.mp.ImportStats(); tc.object == "activities" && (accepted != 4 || dupes != 0) {
				t.Errorf("/import accepted %d events (%d duplicates), want 4 once each", accepted, dupes)
			}
			reqs := e.mp.Requests(tc.route)
			// 2 chunks of 3 valid rows, each with a row Mixpanel refuses: one
			// request each (a strict 400, a partial success), the first one
			// refused once for the rate limit before.
			wantStatus := []int{http.StatusTooManyRequests, http.StatusBadRequest, http.StatusBadRequest}
			if diff := cmp.Diff(wantStatus, statuses(reqs)); diff != "" {
				t.Errorf("%s answers (-want +got):\n%s", tc.route, diff)
			}
			if diff := cmp.Diff(tc.wantRejects, e.rejectLines(t, tc.key)); diff != "" {
				t.Errorf("our rejects' lines (-want +got):\n%s", diff)
			}
			var mpLines []int
			for _, c := range e.ceErrors(t, tc.key) {
				if c.Error.Source != "mixpanel" || c.Error.Index == nil || c.Error.Message == "" {
					t.Errorf("ce-errors.jsonl entry %+v: want Mixpanel's refusal with its index and message", c)
				}
				mpLines = append(mpLines, c.Line)
			}
			if diff := cmp.Diff(tc.wantMixpanel, mpLines); diff != "" {
				t.Errorf("Mixpanel's rejects' lines (-want +got):\n%s", diff)
			}
			s := e.summary(t, tc.key)
			if s.Status != importer.StatusPartial || s.Records != 8 || s.Valid != 6 || s.Rejected != 2 ||
				s.Accepted != 4 || s.CEFailed != 2 || len(s.CEJobs) != 2 {
				t.Errorf("summary = %+v, want PARTIAL: 8 records, 6 valid, 2 rejected, 4 accepted, 2 refused by Mixpanel, 2 chunks", s)
			}
		})
	}
	if !strings.Contains(e.fn.Logs(), "mixpanel: retrying request") {
		t.Errorf("no retry logged after the 429s")
	}
}

// The invocation's deadline comes while a users chunk is being sent: the
// import checkpoints mid-chunk, and the resumed invocation sends the chunk
// again, skipping every profile batch Mixpanel answered. No profile
// update (each an $add, which counts twice if applied twice) is applied
// twice, and none is lost.
func TestMixpanelE2ECheckpointMidUsersChunk(t *testing.T) {
	const (
		timeout = 32 * time.Second
		records = 24000 // 12 batches of 2000: one chunk
	)
	e := startMixpanelE2E(t, mpE2EOptions{timeout: timeout, chunkRecords: 50000})
	var b strings.Builder
	for i := 1; i <= records; i++ {
		fmt.Fprintf(&b, `{"$distinct_id":"good-%d","$add":{"logins":1}}`+"\n", i)
	}
	key := "imports/users/mp-checkpoint.jsonl"
	ev := e.put(t, key, []byte(b.String()), nil)

	// The client keeps 10 batches in flight. Their answers held, they keep
	// the chunk's reader waiting past the importer's work deadline (a
	// quarter of the time left before the end: 8 s); answered 1 s later,
	// 3 s before the upload's own deadline (an eighth before the end),
	// they are done, the 11th batch (read already) goes out, and the next
	// read finds the work deadline passed: the upload stops mid-chunk.
	start := time.Now()
	e.holdUntil.Store(start.Add(timeout*3/4 + time.Second).UnixNano())
	res := e.invokeFn(t, ev)
	if len(res) != 1 || res[0].Status != importer.StatusCheckpointed {
		t.Fatalf("first invocation = %+v, want CHECKPOINTED (deadline) after %v", res, time.Since(start))
	}
	e.holdUntil.Store(0)
	first := e.mp.Requests(mptest.RouteEngage)
	if err := e.invoke.Wait(t.Context()); err != nil { // the resume
		t.Fatal(err)
	}
	recs := e.invoke.Records()
	if len(recs) != 1 || !strings.Contains(string(recs[0].Payload), `"action":"resume"`) || recs[0].Failed() {
		t.Fatalf("async invocations = %+v, want one resume that succeeded", recs)
	}
	if !strings.Contains(string(recs[0].Result.Payload), `"status":"`+importer.StatusSucceeded+`"`) {
		t.Errorf("resume answered %s, want SUCCEEDED", recs[0].Result.Payload)
	}

	all := e.mp.Requests(mptest.RouteEngage)
	if len(first) != 11 {
		t.Errorf("/engage requests before the checkpoint = %d, want 11 (the batches in flight and the one read already)", len(first))
	}
	if len(all) != 12 {
		t.Errorf("/engage requests = %d, want 12 (24000 updates in batches of 2000, none sent twice)", len(all))
	}
	for _, r := range all {
		if r.Status != http.StatusOK {
			t.Errorf("/engage request answered %d, want 200 (no batch lost or refused): %+v", r.Status, r)
		}
	}
	if diff := cmp.Diff(sortedIDs("good", records), e.updatedIDs(t)); diff != "" {
		t.Errorf("profile updates applied (-want +got):\n%s", diff)
	}
	// The chunk's state: two sends, the second one finished it.
	store := s3stream.New(e.s3)
	data, _, err := store.ReadSmall(t.Context(), e.bucket, mpdirect.ChunkStatePrefix+importer.ChunkID(res[0].ImportID, 1)+".json")
	if err != nil {
		t.Fatal(err)
	}
	var st struct {
		Sends    int   `json:"sends"`
		Records  int64 `json:"records"`
		Imported int64 `json:"imported"`
		Complete bool  `json:"complete"`
	}
	if err := json.Unmarshal(data, &st); err != nil {
		t.Fatal(err)
	}
	if st.Sends != 2 || !st.Complete || st.Records != records || st.Imported != records {
		t.Errorf("chunk state = %+v, want 2 sends, complete, %d records imported", st, records)
	}
	s := e.summary(t, key)
	if s.Status != importer.StatusSucceeded || s.Accepted != records || s.CEFailed != 0 || len(s.CEJobs) != 1 {
		t.Errorf("summary = %+v, want SUCCEEDED with %d accepted in one chunk", s, records)
	}
	if logs := e.fn.Logs(); !strings.Contains(logs, `"import checkpointed"`) || !strings.Contains(logs, `reason="deadline near"`) {
		t.Errorf("no checkpoint for the deadline in the logs")
	}
}
