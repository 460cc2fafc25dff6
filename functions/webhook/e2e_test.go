package main

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/cebulk/cebulk/internal/awstest"
	"github.com/cebulk/cebulk/internal/cetest"
	"github.com/cebulk/cebulk/internal/lambdalocal"
	"github.com/cebulk/cebulk/internal/lambdatest"
)

// TestEndToEnd runs the real WebhookFunction bootstrap behind an API Gateway
// stand-in, with the real ExportFunction bootstrap behind a Lambda Invoke API
// stand-in, against the CE emulator and moto: an operator backfill, CE's
// signed callback, the hand-off, the exported partition; and a forged and a
// duplicate callback that change nothing.
// e2eStack is the webhook behind an API Gateway stand-in and the export
// function (not yet registered with the Invoke API stand-in), each with
// exactly its own role from template.yaml, with the CE emulator (signing
// callbacks) and moto around them.
type e2eStack struct {
	st      *lambdatest.Stack
	fake    *cetest.Fake
	creds   cetest.Credentials
	webhook *lambdatest.Function
	gateway *httptest.Server
	export  *lambdatest.Function
}

// e2eDay is the day the stack's CE emulator has activities around.
var e2eDay = time.Date(2026, 11, 20, 0, 0, 0, 0, time.UTC)

func startStack(t *testing.T, opts cetest.Options) *e2eStack {
	t.Helper()
	x := &e2eStack{}
	opts.SignatureKey = "e2e-signature-key"
	srv, fake := cetest.NewServer(t, opts)
	x.fake = fake
	fake.SeedGenerated("activities", cetest.SampleActivities(7, 300, e2eDay.AddDate(0, 0, -1), e2eDay.AddDate(0, 0, 2)))
	x.creds = fake.Credentials()
	secret, _ := json.Marshal(map[string]string{"userSecret": x.creds.UserSecret, "organizationSecret": x.creds.OrganizationSecret, "elementToken": x.creds.ElementToken, "signatureKey": "e2e-signature-key"})
	secretARN := awstest.NewSecret(t, string(secret))
	// Each function runs with exactly its own role from template.yaml; the
	// webhook's hand-offs go through the proxy to the Invoke API stand-in.
	st := lambdatest.NewStack(t, lambdatest.StackOptions{SecretARN: secretARN})
	x.st = st

	common := map[string]string{"CE_BASE_URL": cetest.BaseURL(srv), "LOG_LEVEL": "debug"}
	webhookEnv := map[string]string{"EXPORT_FUNCTION_NAME": st.FunctionName("export"), "IMPORT_FUNCTION_NAME": st.FunctionName("import")}
	for k, v := range common {
		webhookEnv[k] = v
	}
	x.webhook = st.Start(t, "WebhookFunction", lambdatest.Build(t, "./functions/webhook"), lambdatest.Options{Timeout: 30 * time.Second, Env: webhookEnv})
	x.gateway = httptest.NewServer(&lambdalocal.Gateway{Fn: x.webhook.Function})
	t.Cleanup(x.gateway.Close)

	exportEnv := map[string]string{
		"CALLBACK_URL": x.gateway.URL + "/callbacks/ce", "EXPORT_OBJECTS": "activities", "EXPORT_START": e2eDay.Format(time.DateOnly),
		"EXPORT_TIMEZONE": "UTC", "EXPORT_LAG": "0s", "EXPORT_MAX_JOBS": "6",
	}
	for k, v := range common {
		exportEnv[k] = v
	}
	x.export = st.Start(t, "ExportFunction", lambdatest.Build(t, "./functions/export"), lambdatest.Options{Timeout: 120 * time.Second, Env: exportEnv})
	return x
}

func TestEndToEnd(t *testing.T) {
	x := startStack(t, cetest.Options{})
	st, fake, creds, webhook, gateway, export := x.st, x.fake, x.creds, x.webhook, x.gateway, x.export
	bucket, invokeAPI := st.Bucket, st.Invoke
	gatewayB64 := httptest.NewServer(&lambdalocal.Gateway{Fn: webhook.Function, Base64: true})
	t.Cleanup(gatewayB64.Close)
	invokeAPI.Register(st.FunctionName("export"), export.Function)
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

	// 1. The operator starts a one-day backfill through the gateway.
	resp := post(t, gateway.URL+"/exports", `{"objects":["activities"],"from":"2026-11-20","to":"2026-11-21"}`, nil)
	if resp.status != http.StatusAccepted || !strings.Contains(resp.body, `"export-activities-2026-11-20"`) {
		t.Fatalf("POST /exports = %d %s, want 202 naming the job\nwebhook logs:\n%s", resp.status, resp.body, webhook.Logs())
	}
	wait()
	jobs := fake.Jobs()
	if len(jobs) != 1 || jobs[0].CallbackURL == "" {
		t.Fatalf("CE jobs after the run = %+v, want one with a callback URL", jobs)
	}
	callbackURL := jobs[0].CallbackURL
	if !strings.HasPrefix(callbackURL, gateway.URL+"/callbacks/ce?") {
		t.Fatalf("callback URL %q does not point at the gateway", callbackURL)
	}

	// 2. A forged callback (right URL and token, wrong signature) is refused.
	forged := `{"id":"` + jobs[0].ID + `","status":"COMPLETED","recordsCount":1}`
	if r := post(t, callbackURL, forged, map[string]string{"Elements-Webhook-Signature": "sha256=" + strings.Repeat("A", 43) + "="}); r.status != http.StatusUnauthorized {
		t.Errorf("forged callback = %d %s, want 401", r.status, r.body)
	}
	// A genuine signature over another body does not verify either.
	if r := post(t, callbackURL, forged, map[string]string{"Elements-Webhook-Signature": cetest.Sign([]byte(forged+" "), "e2e-signature-key")}); r.status != http.StatusUnauthorized {
		t.Errorf("callback with a signature of other bytes = %d, want 401", r.status)
	}
	wait()
	if n := len(invokeAPI.Records()); n != 1 {
		t.Errorf("async invocations after forged callbacks = %d, want 1 (the run)", n)
	}

	// 3. CE finishes and calls back, signed; the webhook hands the job to
	// the export function, which collects it.
	deliveries := fake.DeliverCallbacks(ctx)
	if len(deliveries) != 1 || deliveries[0].StatusCode != http.StatusOK {
		t.Fatalf("callback deliveries = %+v, want one answered 200\nwebhook logs:\n%s", deliveries, webhook.Logs())
	}
	wait()
	prefix := "exports/activities/dt=2026-11-20/"
	keys := awstest.Keys(t, bucket, prefix)
	if !contains(keys, prefix+"_SUCCESS") || !contains(keys, prefix+"_manifest.json") {
		t.Fatalf("partition keys = %v, want a published partition\nexport logs:\n%s", keys, export.Logs())
	}
	var manifest struct{ Records int64 }
	if err := json.Unmarshal(getObject(t, bucket, prefix+"_manifest.json"), &manifest); err != nil || manifest.Records != 100 {
		t.Errorf("manifest records = %d (%v), want the 100 events of the day", manifest.Records, err)
	}

	// 4. CE sends the same callback again, through a gateway that
	// base64-encodes bodies: verified, answered 200, nothing handed over.
	d, err := fake.ResendCallback(ctx, jobs[0].ID)
	if err != nil || d.StatusCode != http.StatusOK {
		t.Errorf("duplicate callback = %+v, %v; want 200", d, err)
	}
	b64URL := strings.Replace(callbackURL, gateway.URL, gatewayB64.URL, 1)
	if r := post(t, b64URL, string(deliveries[0].Body), map[string]string{"Elements-Webhook-Signature": deliveries[0].Signature}); r.status != http.StatusOK {
		t.Errorf("duplicate callback with a base64 body = %d %s, want 200", r.status, r.body)
	}
	wait()
	if n := len(invokeAPI.Records()); n != 2 {
		t.Errorf("async invocations = %d, want 2 (the run and one collect)", n)
	}

	// 5. The job is readable; health answers.
	if r := get(t, gateway.URL+"/jobs/export-activities-2026-11-20"); r.status != 200 || !strings.Contains(r.body, `"status":"DONE"`) || strings.Contains(r.body, "tokenHash") {
		t.Errorf("GET /jobs = %d %s, want the DONE job without its token hash", r.status, r.body)
	}
	// An unknown job is a 404: S3 answers the webhook's GET of the missing
	// ledger record 404 (not 403) because its role may list the bucket.
	if r := get(t, gateway.URL+"/jobs/export-activities-1999-01-01"); r.status != http.StatusNotFound {
		t.Errorf("GET /jobs of an unknown job = %d %s, want 404", r.status, r.body)
	}
	if r := get(t, gateway.URL+"/healthz"); r.status != 200 {
		t.Errorf("GET /healthz = %d", r.status)
	}
	if logs := webhook.Logs() + export.Logs(); strings.Contains(logs, creds.UserSecret) || strings.Contains(logs, "e2e-signature-key") || strings.Contains(logs, tokenOf(callbackURL)) {
		t.Errorf("logs contain a secret or a callback token")
	}
}

type answer struct {
	status int
	body   string
}

func post(t *testing.T, url, body string, headers map[string]string) answer {
	t.Helper()
	req, _ := http.NewRequestWithContext(t.Context(), http.MethodPost, url, bytes.NewReader([]byte(body)))
	req.Header.Set("Content-Type", "application/json")
	for k, v := range headers {
		req.Header.Set(k, v)
	}
	return do(t, req)
}

func get(t *testing.T, url string) answer {
	t.Helper()
	req, _ := http.NewRequestWithContext(t.Context(), http.MethodGet, url, nil)
	return do(t, req)
}

func do(t *testing.T, req *http.Request) answer {
	t.Helper()
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", req.Method, req.URL.Path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return answer{resp.StatusCode, string(b)}
}

func getObject(t *testing.T, bucket, key string) []byte {
	t.Helper()
	out, err := awstest.S3(t).GetObject(t.Context(), &s3.GetObjectInput{Bucket: aws.String(bucket), Key: aws.String(key)})
	if err != nil {
		t.Fatalf("GetObject(%s): %v", key, err)
	}
	defer out.Body.Close()
	b, _ := io.ReadAll(out.Body)
	return b
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

func tokenOf(callbackURL string) string {
	_, tok, _ := strings.Cut(callbackURL, "token=")
	if tok == "" {
		return "\x00never"
	}
	return tok
}
