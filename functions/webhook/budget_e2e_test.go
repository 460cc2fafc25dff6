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
	"github.com/cebulk/cebulk/internal/exporter"
	"github.com/cebulk/cebulk/internal/lambdalocal"
	"github.com/cebulk/cebulk/internal/lambdatest"
)

// TestBackfillUnderQueryBudget runs the real WebhookFunction and
// ExportFunction bootstraps: a 40-day POST /exports under
// EXPORT_QUERIES_PER_HOUR=15 starts exactly 15 CE jobs, publishes exactly
// those 15 partitions, shows the other 25 days pending with an estimate in
// GET /runs/{id}, and further sweeps in the same hour start nothing. (The
// hour-by-hour progression to DONE is internal/exporter's
// TestRunHourByHour, on an injected clock.)
func TestBackfillUnderQueryBudget(t *testing.T) {
	// The budget counts clock hours: keep the test inside one.
	if left := time.Until(time.Now().Truncate(time.Hour).Add(time.Hour)); left < 3*time.Minute {
		time.Sleep(left + time.Second)
	}
	bucket := awstest.NewBucket(t)
	first := time.Date(2026, 10, 1, 0, 0, 0, 0, time.UTC)
	srv, fake := cetest.NewServer(t, cetest.Options{SignatureKey: "e2e-signature-key"})
	gen := cetest.SampleActivities(11, 800, first, first.AddDate(0, 0, 40))
	fake.SeedGenerated("activities", gen)
	perDay := map[string]int64{}
	gen.Records(func(r cetest.Record) bool { perDay[r.Time.UTC().Format(time.DateOnly)]++; return true })
	creds := fake.Credentials()
	secret, _ := json.Marshal(map[string]string{"userSecret": creds.UserSecret, "organizationSecret": creds.OrganizationSecret, "elementToken": creds.ElementToken, "signatureKey": "e2e-signature-key"})
	secretARN := awstest.NewSecret(t, string(secret))
	invokeAPI, invokeURL := lambdatest.NewInvokeAPI(t)
	env := func(extra map[string]string) map[string]string {
		m := map[string]string{
			"CE_BASE_URL": cetest.BaseURL(srv), "CE_SECRET_ID": secretARN, "DATA_BUCKET": bucket,
			"AWS_ENDPOINT_URL_LAMBDA": invokeURL, "LOG_LEVEL": "info",
		}
		for k, v := range extra {
			m[k] = v
		}
		return m
	}
	webhook := lambdatest.Start(t, lambdatest.Build(t, "./functions/webhook"), lambdatest.Options{Name: "cebulk-webhook", Timeout: 30 * time.Second,
		Env: env(map[string]string{"EXPORT_FUNCTION_NAME": "cebulk-export", "IMPORT_FUNCTION_NAME": "cebulk-import"})})
	gateway := httptest.NewServer(&lambdalocal.Gateway{Fn: webhook.Function})
	t.Cleanup(gateway.Close)
	export := lambdatest.Start(t, lambdatest.Build(t, "./functions/export"), lambdatest.Options{Name: "cebulk-export", Timeout: 120 * time.Second,
		Env: env(map[string]string{
			"CALLBACK_URL": gateway.URL + "/callbacks/ce", "EXPORT_OBJECTS": "activities", "EXPORT_TIMEZONE": "UTC",
			"EXPORT_LAG": "0s", "EXPORT_QUERIES_PER_HOUR": "15",
		})})
	invokeAPI.Register("cebulk-export", export.Function)
	ctx := t.Context()
	wait := func() {
		t.Helper()
		if err := invokeAPI.Wait(ctx); err != nil {
			t.Fatal(err)
		}
		for _, r := range invokeAPI.Records() {
			if r.Err != nil || r.Result.Error != nil {
				t.Fatalf("async invocation of %s failed: %v %v\nexport logs:\n%s", r.Function, r.Err, r.Result.Error, export.Logs())
			}
		}
	}

	resp := post(t, gateway.URL+"/exports", `{"objects":["activities"],"from":"2026-10-01","to":"2026-11-10"}`, nil)
	if resp.status != http.StatusAccepted {
		t.Fatalf("POST /exports = %d %s\nwebhook logs:\n%s", resp.status, resp.body, webhook.Logs())
	}
	var accepted struct{ RunID string }
	if err := json.Unmarshal([]byte(resp.body), &accepted); err != nil || accepted.RunID == "" {
		t.Fatalf("POST /exports answer %s: no runId", resp.body)
	}
	wait()
	if n := len(fake.Jobs()); n != 15 {
		t.Fatalf("%d CE jobs after the run, want exactly 15\nexport logs:\n%s", n, export.Logs())
	}
	deliveries := fake.DeliverCallbacks(ctx)
	if len(deliveries) != 15 {
		t.Fatalf("%d callbacks, want 15", len(deliveries))
	}
	wait()
	for range 2 {
		export.MustInvoke(t, map[string]string{"action": "sweep"})
	}
	if n := len(fake.Jobs()); n != 15 {
		t.Errorf("%d CE jobs after two sweeps in the same hour, want still 15", n)
	}
	// Exactly the 15 oldest days are published, each with its own records.
	published := 0
	for d := first; d.Before(first.AddDate(0, 0, 40)); d = d.AddDate(0, 0, 1) {
		day := d.Format(time.DateOnly)
		prefix := "exports/activities/dt=" + day + "/"
		keys := awstest.Keys(t, bucket, prefix)
		if d.Before(first.AddDate(0, 0, 15)) != contains(keys, prefix+"_SUCCESS") {
			t.Errorf("day %s: partition keys %v", day, keys)
			continue
		}
		if len(keys) == 0 {
			continue
		}
		published++
		var m struct{ Records int64 }
		if err := json.Unmarshal(getObject(t, bucket, prefix+"_manifest.json"), &m); err != nil || m.Records != perDay[day] {
			t.Errorf("day %s: manifest records %d (%v), want %d", day, m.Records, err, perDay[day])
		}
	}
	if published != 15 {
		t.Errorf("%d partitions published, want 15", published)
	}

	r := get(t, gateway.URL+"/runs/"+accepted.RunID)
	var v exporter.RunView
	if r.status != http.StatusOK || json.Unmarshal([]byte(r.body), &v) != nil {
		t.Fatalf("GET /runs/%s = %d %s", accepted.RunID, r.status, r.body)
	}
	p := v.Progress
	if v.Status != exporter.RunRunning || p.Total != 40 || p.Done != 15 || p.Pending != 25 || p.Failed != 0 || v.ETA == nil || v.QueriesPerHour != 15 {
		t.Errorf("GET /runs = %s, want RUNNING with 15 done, 25 pending and an ETA", r.body)
	}
	// 25 days at 15 an hour with this hour spent: the last starts two hours on.
	hour := time.Now().UTC().Truncate(time.Hour)
	if v.StartsBy == nil || !v.StartsBy.Equal(hour.Add(2*time.Hour)) {
		t.Errorf("startsBy = %v, want %v", v.StartsBy, hour.Add(2*time.Hour))
	}
	if !strings.HasPrefix(v.By, "POST /exports") {
		t.Errorf("by = %q", v.By)
	}
	if r := get(t, gateway.URL+"/runs/no-such-run"); r.status != http.StatusNotFound {
		t.Errorf("GET /runs/no-such-run = %d", r.status)
	}
}
