package main

import (
	"fmt"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/cebulk/cebulk/internal/lambdalocal"
	"github.com/cebulk/cebulk/internal/lambdatest"
	"github.com/cebulk/cebulk/internal/ledger"
)

// async puts the function behind the stack's Lambda Invoke API stand-in,
// which retries a failed asynchronous invocation twice (shortened waits)
// and then sends Lambda's invocation record to a moto SQS failure queue.
// It returns the stand-in, its endpoint for the services that invoke the
// function (EventBridge, the webhook), the function's name and the queue.
func (x *e2e) async(t *testing.T) (*lambdalocal.InvokeAPI, string, string, *lambdatest.FailureQueue) {
	t.Helper()
	api := x.stack.Invoke
	srv := httptest.NewServer(api)
	t.Cleanup(srv.Close)
	q := x.stack.NewFailureQueue(t)
	name := x.stack.FunctionName("export")
	api.RegisterAsync(name, x.fn.Function, q.AsyncConfig(t, "ExportFunction"))
	return api, srv.URL, name, q
}

func waitAsync(t *testing.T, api *lambdalocal.InvokeAPI) {
	t.Helper()
	if err := api.Wait(t.Context()); err != nil {
		t.Fatal(err)
	}
}

// A CE outage (every download cut) lasting through Lambda's retries: each
// collect records its failed attempt and succeeds, so Lambda does not retry
// it; the sweep after the outage exports every day, and nothing is queued.
// Before the fix each collect failed its invocation, Lambda retried it
// twice, the third attempt marked the day FAILED and the event was queued.
func TestE2ECEOutageEndsWithEveryDayExported(t *testing.T) {
	today := time.Now().UTC().Truncate(24 * time.Hour)
	x := startE2E(t, map[string]string{"EXPORT_START": today.AddDate(0, 0, -3).Format(time.DateOnly)})
	byDay := x.seed(2000, today.AddDate(0, 0, -3), today.AddDate(0, 0, -1))
	api, endpoint, name, q := x.async(t)

	run := x.invoke(t, testdata(t, "run.json"))
	ids := startedIDs(run.Run)
	if want := []string{"export-activities-" + x.day(-3), "export-activities-" + x.day(-2)}; fmt.Sprint(ids) != fmt.Sprint(want) {
		t.Fatalf("run started %v, want %v", ids, want)
	}

	// CE calls back; the webhook hands each job over as an asynchronous
	// collect; every download is cut for as long as Lambda would retry.
	end := x.fake.CutDownloads(16 << 10)
	for _, id := range ids {
		lambdatest.InvokeEvent(t, endpoint, name, map[string]string{"action": "collect", "jobId": id})
	}
	waitAsync(t, api)
	end()
	recs := api.Records()
	if len(recs) != 2 {
		t.Errorf("invocations during the outage = %d, want 2 (one per collect, no Lambda retry)", len(recs))
	}
	for _, r := range recs {
		if r.Failed() {
			t.Errorf("collect invocation failed: %v %v", r.Err, r.Result.Error)
		}
	}
	for _, id := range ids {
		if j := x.job(t, id); j.Status != ledger.StatusPending || j.Attempts != 2 || !strings.Contains(j.LastError, "unexpected EOF") {
			t.Errorf("job %s after the outage: %s, attempt %d, %q; want PENDING, 2, the cut download", id, j.Status, j.Attempts, j.LastError)
		}
	}

	// The scheduled sweep, a few minutes later, collects both.
	lambdatest.InvokeEvent(t, endpoint, name, testdata(t, "sweep.json"))
	waitAsync(t, api)
	for _, d := range []string{x.day(-3), x.day(-2)} {
		x.checkPartition(t, "activities", "dt="+d, byDay[d])
		if j := x.job(t, "export-activities-"+d); j.Status != ledger.StatusDone {
			t.Errorf("day %s: %s (%s), want DONE", d, j.Status, j.LastError)
		}
	}
	if b, ok := x.read(t, "state/watermarks/activities.json"); !ok || !strings.Contains(string(b), `"next":"`+x.day(-1)+`"`) {
		t.Errorf("watermark = %s, want next %s", b, x.day(-1))
	}
	if recs := q.Records(t); len(recs) != 0 {
		t.Errorf("failure queue holds %d records, want none: %+v", len(recs), recs)
	}
}

// A failure that leaves no record in the ledger (here: a collect of a job
// the ledger does not have) fails the invocation: Lambda retries it twice,
// then sends its record to the failure queue.
func TestE2EUnrecordedFailureReachesTheQueue(t *testing.T) {
	x := startE2E(t, nil)
	api, endpoint, name, q := x.async(t)
	payload := []byte(`{"action":"collect","jobId":"export-activities-1999-01-01"}`)
	lambdatest.InvokeEvent(t, endpoint, name, payload)
	waitAsync(t, api)
	recs := api.Records()
	if len(recs) != 3 {
		t.Fatalf("invocations = %d, want 3 (the first and two retries)", len(recs))
	}
	for i, r := range recs {
		if !r.Failed() || string(r.Payload) != string(payload) || r.Attempt != i+1 {
			t.Errorf("invocation %d = attempt %d, failed %v, payload %s; want a failure with the same payload", i, r.Attempt, r.Failed(), r.Payload)
		}
	}
	queued := q.Records(t)
	if len(queued) != 1 {
		t.Fatalf("failure queue holds %d records, want 1", len(queued))
	}
	lambdatest.CheckExhausted(t, queued[0], name, payload)
	if !strings.Contains(string(queued[0].ResponsePayload), "export-activities-1999-01-01") {
		t.Errorf("responsePayload = %s, want the collect's error", queued[0].ResponsePayload)
	}
	if queued[0].RequestContext.RequestID != recs[0].RequestID {
		t.Errorf("queued requestId %s, want the invocation's %s", queued[0].RequestContext.RequestID, recs[0].RequestID)
	}
}
