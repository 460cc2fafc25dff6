package main

import (
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/cebulk/cebulk/internal/importer"
	"github.com/cebulk/cebulk/internal/lambdatest"
	"github.com/cebulk/cebulk/internal/ledger"
)

// A CE outage (every upload refused with 503) lasting through Lambda's
// retries: the S3 event's invocation records the failure and succeeds, so
// Lambda does not retry it; the sweep after the outage resumes the import,
// which completes, and nothing is queued. Before the fix the invocation
// failed, Lambda retried it twice, and the third failure gave the import
// up (FAILED).
func TestE2ECEOutageEndsWithTheImportComplete(t *testing.T) {
	e := startE2E(t)
	q := e.stack.NewFailureQueue(t)
	e.invoke.RegisterAsync(e.name, e.fn.Function, q.AsyncConfig(t, "ImportFunction"))
	var b strings.Builder
	for i := 1; i <= 7; i++ {
		fmt.Fprintf(&b, `{"event":"E","properties":{"time":%d,"distinct_id":"good-%d"}}`+"\n", 1764028800+i, i)
	}
	key := "imports/activities/outage.jsonl"
	ev := e.put(t, key, []byte(b.String()), nil)

	end := e.fake.Outage("POST", "/bulk/activities", http.StatusServiceUnavailable)
	lambdatest.InvokeEvent(t, e.endpoint, e.name, ev) // S3's notification
	if err := e.invoke.Wait(t.Context()); err != nil {
		t.Fatal(err)
	}
	end()
	recs := e.invoke.Records()
	if len(recs) != 1 || recs[0].Failed() {
		t.Fatalf("invocations during the outage = %d (last failed: %v), want one that succeeded (no Lambda retry)", len(recs), recs[len(recs)-1].Failed())
	}
	if !strings.Contains(string(recs[0].Result.Payload), `"status":"`+importer.StatusRetry+`"`) {
		t.Errorf("invocation answered %s, want status RETRY", recs[0].Result.Payload)
	}

	// The scheduled sweep, a few minutes later, resumes it.
	e.invokeFn(t, map[string]string{"action": "sweep"})
	e.settle(t)
	if s := e.summary(t, key); s.Status != importer.StatusSucceeded || s.Accepted != 7 {
		t.Errorf("summary = %+v, want SUCCEEDED with 7 accepted\nlogs:\n%s", s, e.fn.Logs())
	}
	if diff := cmp.Diff(ids("good", 7), e.uploadedIDs(t, "activities")); diff != "" {
		t.Errorf("records in CE (-want +got):\n%s", diff)
	}
	id := importer.ImportID(e.bucket, key, strings.Trim(ev["Records"].([]any)[0].(map[string]any)["s3"].(map[string]any)["object"].(map[string]any)["eTag"].(string), `"`))
	if j, _, err := e.jobs.Get(t.Context(), id); err != nil || j.Status != ledger.StatusDone {
		t.Errorf("import record = %+v, %v; want DONE", j, err)
	}
	for _, r := range e.invoke.Records() {
		if r.Failed() {
			t.Errorf("async invocation failed: %v %v", r.Err, r.Result.Error)
		}
	}
	if recs := q.Records(t); len(recs) != 0 {
		t.Errorf("failure queue holds %d records, want none: %+v", len(recs), recs)
	}
}

// A sweep during a CE outage (every status read refused) cannot finalize,
// but its invocation succeeds: the next sweep is its retry, so nothing is
// queued. Before the fix every failing sweep failed its invocation, Lambda
// retried it twice and queued it.
func TestE2EImportSweepDuringAnOutageQueuesNothing(t *testing.T) {
	e := startE2E(t)
	q := e.stack.NewFailureQueue(t)
	e.invoke.RegisterAsync(e.name, e.fn.Function, q.AsyncConfig(t, "ImportFunction"))
	key := "imports/activities/sweep-outage.jsonl"
	res := e.invokeFn(t, e.put(t, key, []byte(`{"event":"E","properties":{"time":1764028801,"distinct_id":"good-1"}}`+"\n"), nil))
	if len(res) != 1 || res[0].Status != importer.StatusWaiting {
		t.Fatalf("import = %+v, want WAITING for CE", res)
	}
	e.clock.Advance(2 * time.Hour) // CE finishes the job; its callback is lost

	end := e.fake.Outage("GET", "/status", http.StatusServiceUnavailable)
	lambdatest.InvokeEvent(t, e.endpoint, e.name, map[string]string{"action": "sweep"}) // the schedule
	if err := e.invoke.Wait(t.Context()); err != nil {
		t.Fatal(err)
	}
	end()
	if recs := e.invoke.Records(); len(recs) != 1 || recs[0].Failed() {
		t.Errorf("sweep invocations = %d, want one that succeeded", len(recs))
	}
	if recs := q.Records(t); len(recs) != 0 {
		t.Errorf("failure queue holds %d records, want none: %+v", len(recs), recs)
	}
	// The next sweep finalizes it.
	e.invokeFn(t, map[string]string{"action": "sweep"})
	if s := e.summary(t, key); s.Status != importer.StatusSucceeded {
		t.Errorf("summary = %+v, want SUCCEEDED", s)
	}
}
