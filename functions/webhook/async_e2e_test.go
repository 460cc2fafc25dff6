package main

import (
	"net/http"
	"strings"
	"testing"

	"github.com/cebulk/cebulk/internal/awstest"
	"github.com/cebulk/cebulk/internal/cetest"
)

// TestE2ETransientFailures: the webhook, the export function behind the
// Lambda stand-in (Lambda's retries, shortened, and a moto SQS failure
// queue), CE and moto. Two blips:
//  1. the export function cannot be invoked when CE's callback comes: the
//     webhook answers 5xx and releases its claim, CE sends the callback
//     again, and the second hands the job over;
//  2. the collect it hands over meets a cut download: the collect records
//     the failed attempt and succeeds, so Lambda does not retry it; the
//     sweep's collect gets the job. Nothing reaches the failure queue.
func TestE2ETransientFailures(t *testing.T) {
	x := startStack(t, cetest.Options{CallbackAttempts: 3})
	fake, webhook, gateway, export := x.fake, x.webhook, x.gateway, x.export
	bucket, invokeAPI := x.st.Bucket, x.st.Invoke
	queue := x.st.NewFailureQueue(t)
	ctx := t.Context()

	// The operator's backfill starts the CE job (the run, invoked directly).
	out := export.MustInvoke(t, map[string]any{"action": "run", "objects": []string{"activities"}, "from": "2026-11-20", "to": "2026-11-21"})
	if !strings.Contains(string(out), `"export-activities-2026-11-20"`) {
		t.Fatalf("run = %s", out)
	}

	// 1. CE calls back while the export function cannot be invoked.
	first := fake.DeliverCallbacks(ctx)
	if len(first) != 1 || first[0].StatusCode < 500 {
		t.Fatalf("first callback = %+v, want a 5xx (the hand-over failed)\nwebhook logs:\n%s", first, webhook.Logs())
	}
	invokeAPI.RegisterAsync(x.st.FunctionName("export"), export.Function, queue.AsyncConfig(t, "ExportFunction"))

	// 2. CE's retry hands the job over; its download is cut.
	end := fake.CutDownloads(8 << 10)
	again := fake.DeliverCallbacks(ctx)
	if len(again) != 1 || again[0].StatusCode != http.StatusOK || again[0].Attempt != 2 {
		t.Fatalf("retried callback = %+v, want attempt 2 answered 200\nwebhook logs:\n%s", again, webhook.Logs())
	}
	if err := invokeAPI.Wait(ctx); err != nil {
		t.Fatal(err)
	}
	end()
	recs := invokeAPI.Records()
	if len(recs) != 1 || recs[0].Failed() || !strings.Contains(string(recs[0].Result.Payload), `"outcome":"retry"`) {
		t.Fatalf("collect invocations = %d (%+v), want one that recorded a retry and succeeded", len(recs), recs)
	}

	// 3. A sweep a few minutes later (past its one-minute wait for
	// callbacks) collects the job: here, the collect it runs.
	out = export.MustInvoke(t, map[string]string{"action": "collect", "jobId": "export-activities-2026-11-20"})
	if !strings.Contains(string(out), `"outcome":"collected"`) {
		t.Errorf("collect = %s, want the job collected\nexport logs:\n%s", out, export.Logs())
	}
	prefix := "exports/activities/dt=2026-11-20/"
	if keys := awstest.Keys(t, bucket, prefix); !contains(keys, prefix+"_SUCCESS") {
		t.Errorf("partition keys = %v, want a published partition", keys)
	}
	if r := get(t, gateway.URL+"/jobs/export-activities-2026-11-20"); !strings.Contains(r.body, `"status":"DONE"`) {
		t.Errorf("GET /jobs = %d %s, want DONE", r.status, r.body)
	}
	if recs := queue.Records(t); len(recs) != 0 {
		t.Errorf("failure queue holds %d records, want none: %+v", len(recs), recs)
	}
}
