package main

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/cebulk/cebulk/internal/awstest"
	"github.com/cebulk/cebulk/internal/cetest"
	"github.com/cebulk/cebulk/internal/lambdalocal"
	"github.com/cebulk/cebulk/internal/lambdatest"
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
	bucket := awstest.NewBucket(t)
	day := time.Date(2026, 11, 20, 0, 0, 0, 0, time.UTC)
	srv, fake := cetest.NewServer(t, cetest.Options{SignatureKey: "e2e-signature-key", CallbackAttempts: 3})
	fake.SeedGenerated("activities", cetest.SampleActivities(7, 300, day.AddDate(0, 0, -1), day.AddDate(0, 0, 2)))
	creds := fake.Credentials()
	secret, _ := json.Marshal(map[string]string{"userSecret": creds.UserSecret, "organizationSecret": creds.OrganizationSecret, "elementToken": creds.ElementToken, "signatureKey": "e2e-signature-key"})
	secretARN := awstest.NewSecret(t, string(secret))
	invokeAPI, invokeURL := lambdatest.NewInvokeAPI(t)
	queue := lambdatest.NewFailureQueue(t)

	common := map[string]string{
		"CE_BASE_URL": cetest.BaseURL(srv), "CE_SECRET_ID": secretARN, "DATA_BUCKET": bucket,
		"AWS_ENDPOINT_URL_LAMBDA": invokeURL, "LOG_LEVEL": "debug",
	}
	webhookEnv := map[string]string{"EXPORT_FUNCTION_NAME": "cebulk-export", "IMPORT_FUNCTION_NAME": "cebulk-import"}
	exportEnv := map[string]string{
		"EXPORT_OBJECTS": "activities", "EXPORT_START": day.Format(time.DateOnly),
		"EXPORT_TIMEZONE": "UTC", "EXPORT_LAG": "0s", "EXPORT_MAX_JOBS": "6",
	}
	for k, v := range common {
		webhookEnv[k], exportEnv[k] = v, v
	}
	webhook := lambdatest.Start(t, lambdatest.Build(t, "./functions/webhook"), lambdatest.Options{Name: "cebulk-webhook", Timeout: 30 * time.Second, Env: webhookEnv})
	gateway := httptest.NewServer(&lambdalocal.Gateway{Fn: webhook.Function})
	t.Cleanup(gateway.Close)
	exportEnv["CALLBACK_URL"] = gateway.URL + "/callbacks/ce"
	export := lambdatest.Start(t, lambdatest.Build(t, "./functions/export"), lambdatest.Options{Name: "cebulk-export", Timeout: 120 * time.Second, Env: exportEnv})
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
	invokeAPI.RegisterAsync("cebulk-export", export.Function, queue.AsyncConfig(t))

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
