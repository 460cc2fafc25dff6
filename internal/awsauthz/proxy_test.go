package awsauthz

import (
	"crypto/tls"
	"crypto/x509"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

// The proxy tests need python3 with cfn-lint (the SAM transform) and the npm
// evaluator (make iam-simulate); make test provides both.
var (
	fixtureOnce sync.Once
	fixtureTpl  *Template
	fixtureEv   *Evaluator
	fixtureErr  error
)

func fixture(t *testing.T) (*Template, *Evaluator) {
	t.Helper()
	root, _ := filepath.Abs("../..")
	fixtureOnce.Do(func() {
		var tool string
		if tool, fixtureErr = FindTool(root); fixtureErr != nil {
			return
		}
		if _, fixtureErr = exec.LookPath("cfn-lint"); fixtureErr != nil {
			return
		}
		if fixtureTpl, fixtureErr = Render(t.Context(), filepath.Join(root, "template.yaml"), filepath.Join(root, ".stack", "iam")); fixtureErr != nil {
			return
		}
		fixtureEv, fixtureErr = StartEvaluator(tool)
	})
	if fixtureErr != nil {
		if os.Getenv("CEBULK_STACK") != "" {
			t.Fatal(fixtureErr)
		}
		t.Skipf("IAM evaluator or SAM transform unavailable (run under make test): %v", fixtureErr)
	}
	return fixtureTpl, fixtureEv
}

const (
	stack     = "stk"
	secretARN = "arn:aws:secretsmanager:us-east-1:123456789012:secret:ce-AbCdEf"
)

type upstream struct {
	mu   sync.Mutex
	seen []string
}

func (u *upstream) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	u.mu.Lock()
	u.seen = append(u.seen, r.Method+" "+r.URL.Path)
	u.mu.Unlock()
	if strings.Contains(r.URL.Path, "missing") {
		w.Header().Set("Content-Type", "application/xml")
		w.WriteHeader(http.StatusNotFound)
		_, _ = io.WriteString(w, "<Error><Code>NoSuchKey</Code></Error>")
		return
	}
	_, _ = io.WriteString(w, "ok")
}

func (u *upstream) count() int { u.mu.Lock(); defer u.mu.Unlock(); return len(u.seen) }

type harness struct {
	proxy  *Proxy
	up     *upstream
	tlsURL string
	rawURL string
	client *http.Client
}

func newHarness(t *testing.T, change func(*Roles) (*Roles, error)) *harness {
	tpl, ev := fixture(t)
	ref, err := tpl.Stack(stack, secretARN)
	if err != nil {
		t.Fatal(err)
	}
	roles := ref
	if change != nil {
		if roles, err = change(ref); err != nil {
			t.Fatal(err)
		}
	}
	up := &upstream{}
	upSrv := httptest.NewServer(up)
	t.Cleanup(upSrv.Close)
	p, err := NewProxy(Options{Upstream: upSrv.URL, Lambda: upSrv.URL, Evaluator: ev, Roles: roles, Reference: ref, AdminKeys: []string{"admin"}, Usage: NewUsage()})
	if err != nil {
		t.Fatal(err)
	}
	for key, fn := range map[string]string{"EXPORTKEY": "ExportFunction", "IMPORTKEY": "ImportFunction", "WEBHOOKKEY": "WebhookFunction"} {
		if err := p.AddPrincipal(key, fn); err != nil {
			t.Fatal(err)
		}
	}
	ca, err := NewCA()
	if err != nil {
		t.Fatal(err)
	}
	srv, err := ca.ServeTLS(p)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = srv.Close() })
	raw := httptest.NewServer(p)
	t.Cleanup(raw.Close)
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(ca.PEM)
	return &harness{proxy: p, up: up, tlsURL: srv.URL, rawURL: raw.URL,
		client: &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}}
}

type answer struct {
	status int
	body   string
	header http.Header
}

func (h *harness) do(t *testing.T, base, key, service, method, path string, header map[string]string, body string) answer {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), method, base+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "AWS4-HMAC-SHA256 Credential="+key+"/20261202/us-east-1/"+service+"/aws4_request, SignedHeaders=host, Signature=00")
	for k, v := range header {
		req.Header.Set(k, v)
	}
	resp, err := h.client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return answer{status: resp.StatusCode, body: string(b), header: resp.Header}
}

func TestProxy(t *testing.T) {
	bucket := "/" + BucketName(stack)
	sm := map[string]string{"X-Amz-Target": "secretsmanager.GetSecretValue", "Content-Type": "application/x-amz-json-1.1"}
	tests := []struct {
		name      string
		change    func(*Roles) (*Roles, error)
		plainHTTP bool
		key       string
		service   string
		method    string
		path      string
		header    map[string]string
		body      string
		status    int
		inBody    string // in the answer's body
		forwarded bool
		reason    string // the denial's Reason, "" when none
		statement string // in the denial's Statements
	}{
		{name: "own state object", key: "EXPORTKEY", service: "s3", method: "GET", path: bucket + "/state/jobs/a.json",
			status: 200, forwarded: true},
		{name: "another prefix", key: "EXPORTKEY", service: "s3", method: "PUT", path: bucket + "/imports/a.csv",
			status: 403, inBody: "<Code>AccessDenied</Code>", reason: "ImplicitlyDenied", statement: "no statement of ExportFunctionRole"},
		{name: "missing key with ListBucket is 404", key: "WEBHOOKKEY", service: "s3", method: "GET", path: bucket + "/state/jobs/missing.json",
			status: 404, forwarded: true},
		{name: "missing key without ListBucket is 403", key: "WEBHOOKKEY", service: "s3", method: "GET", path: bucket + "/state/jobs/missing.json",
			change: func(r *Roles) (*Roles, error) { return r.WithoutStatement("WebhookFunction", "ListDataBucket") },
			status: 403, inBody: "<Code>AccessDenied</Code>", forwarded: true, reason: "MissingKey", statement: "WebhookFunctionRolePolicy0/ListDataBucket"},
		{name: "HEAD of a missing key without ListBucket is 403", key: "EXPORTKEY", service: "s3", method: "HEAD", path: bucket + "/exports/x/missing",
			change: func(r *Roles) (*Roles, error) { return r.WithoutStatement("ExportFunction", "ListDataBucket") },
			status: 403, forwarded: true, reason: "MissingKey"},
		{name: "removed statement is named", key: "IMPORTKEY", service: "s3", method: "PUT", path: bucket + "/reports/r.json",
			change: func(r *Roles) (*Roles, error) { return r.WithoutStatement("ImportFunction", "WriteReports") },
			status: 403, reason: "ImplicitlyDenied", statement: "the role lacks template.yaml's ImportFunctionRolePolicy0/WriteReports"},
		{name: "plain http is denied by the bucket policy", plainHTTP: true, key: "EXPORTKEY", service: "s3", method: "GET", path: bucket + "/state/a",
			status: 403, reason: "ExplicitlyDenied", statement: "bucket policy/DenyInsecureTransport"},
		{name: "own secret", key: "WEBHOOKKEY", service: "secretsmanager", method: "POST", path: "/", header: sm, body: `{"SecretId":"` + secretARN + `"}`,
			status: 200, forwarded: true},
		{name: "another secret", key: "WEBHOOKKEY", service: "secretsmanager", method: "POST", path: "/", header: sm,
			body:   `{"SecretId":"arn:aws:secretsmanager:us-east-1:123456789012:secret:other-AbCdEf"}`,
			status: 400, inBody: `"__type":"AccessDeniedException"`, reason: "ImplicitlyDenied"},
		{name: "webhook invokes export", key: "WEBHOOKKEY", service: "lambda", method: "POST", path: "/2015-03-31/functions/stk-export/invocations",
			header: map[string]string{"X-Amz-Invocation-Type": "Event"}, status: 200, forwarded: true},
		{name: "export may not invoke the webhook", key: "EXPORTKEY", service: "lambda", method: "POST", path: "/2015-03-31/functions/stk-webhook/invocations",
			status: 403, inBody: "not authorized to perform: lambda:InvokeFunction", reason: "ImplicitlyDenied"},
		{name: "unknown access key", key: "NOBODY", service: "s3", method: "GET", path: bucket + "/state/a",
			status: 403, inBody: "InvalidAccessKeyId", reason: "UnknownKey"},
		{name: "admin passes", key: "admin", service: "s3", method: "PUT", path: "/any-bucket", status: 200, forwarded: true},
		{name: "unmapped request", key: "EXPORTKEY", service: "s3", method: "GET", path: bucket + "/state/a?retention",
			status: 403, reason: "Unmapped", statement: "actions.go"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, tc.change)
			base := h.tlsURL
			if tc.plainHTTP {
				base = h.rawURL
			}
			a := h.do(t, base, tc.key, tc.service, tc.method, tc.path, tc.header, tc.body)
			if a.status != tc.status || !strings.Contains(a.body, tc.inBody) {
				t.Errorf("answer = %d %s, want %d with %q", a.status, a.body, tc.status, tc.inBody)
			}
			if got := h.up.count() > 0; got != tc.forwarded {
				t.Errorf("forwarded = %v, want %v", got, tc.forwarded)
			}
			d := h.proxy.Denials()
			switch {
			case tc.reason == "" && len(d) != 0:
				t.Errorf("denials = %v, want none", d)
			case tc.reason != "" && (len(d) != 1 || d[0].Reason != tc.reason || !strings.Contains(d[0].Statements, tc.statement)):
				t.Errorf("denials = %v, want one %s naming %q", d, tc.reason, tc.statement)
			}
		})
	}
}

func TestUnused(t *testing.T) {
	h := newHarness(t, nil)
	h.do(t, h.tlsURL, "WEBHOOKKEY", "s3", "GET", "/"+BucketName(stack)+"/state/jobs/a", nil, "")
	got := h.proxy.o.Usage.Unused(h.proxy.o.Roles)
	joined := strings.Join(got, "\n")
	for _, want := range []string{
		"WebhookFunctionRole: statement WebhookFunctionRolePolicy0/StateObjects never allowed s3:PutObject",
		"WebhookFunctionRole: statement WebhookFunctionRolePolicy0/InvokeOwners (lambda:InvokeFunction) allowed nothing",
		"ImportFunctionRole: statement ImportFunctionRolePolicy0/InvokeSelf (lambda:InvokeFunction) allowed nothing",
	} {
		if !strings.Contains(joined, want) {
			t.Errorf("Unused() lacks %q:\n%s", want, joined)
		}
	}
	if strings.Contains(joined, "WebhookFunctionRolePolicy0/StateObjects allowed nothing") || strings.Contains(joined, "AWSLambdaBasicExecutionRole") {
		t.Errorf("Unused() reports a used statement or a managed policy:\n%s", joined)
	}
}

func TestRenderedRoles(t *testing.T) {
	tpl, _ := fixture(t)
	r, err := tpl.Stack("mystack", secretARN)
	if err != nil {
		t.Fatal(err)
	}
	fn, ok := r.Function("ImportFunction")
	if !ok || fn.Name != "mystack-import" || fn.Role.ARN != "arn:aws:iam::123456789012:role/mystack-ImportFunctionRole" {
		t.Fatalf("ImportFunction = %+v", fn)
	}
	var all string
	for _, p := range fn.Policies {
		all += p.Name + " " + string(p.Document) + "\n"
	}
	for _, want := range []string{
		// added by the SAM transform: the on-failure destination and the managed policies
		`"sqs:SendMessage"`, `arn:aws:sqs:us-east-1:123456789012:mystack-FailureQueue`, "AWSLambdaBasicExecutionRole", "AWSXrayWriteOnlyAccess",
		// intrinsics resolved: !Sub with the stack, !If CreateSecret -> !Ref CeSecret
		`arn:aws:s3:::mystack-data-123456789012/imports/*`, secretARN,
	} {
		if !strings.Contains(all, want) {
			t.Errorf("ImportFunction's policies lack %s:\n%s", want, all)
		}
	}
	if len(r.BucketPolicies) != 1 || r.BucketPolicies[0].Bucket != "mystack-data-123456789012" || !strings.Contains(string(r.BucketPolicies[0].Document), "DenyInsecureTransport") {
		t.Errorf("bucket policies = %+v", r.BucketPolicies)
	}
}

// BenchmarkEvaluate measures one uncached evaluation round trip to the node
// process (the proxy caches answers; a new key or action costs one).
func BenchmarkEvaluate(b *testing.B) {
	root, _ := filepath.Abs("../..")
	tool, err := FindTool(root)
	if err != nil {
		b.Skip(err)
	}
	tpl, err := Render(b.Context(), filepath.Join(root, "template.yaml"), filepath.Join(root, ".stack", "iam"))
	if err != nil {
		b.Skip(err)
	}
	ev, err := StartEvaluator(tool)
	if err != nil {
		b.Fatal(err)
	}
	defer ev.Close()
	roles, _ := tpl.Stack(stack, secretARN)
	p, err := NewProxy(Options{Upstream: "http://127.0.0.1:1", Evaluator: ev, Roles: roles})
	if err != nil {
		b.Fatal(err)
	}
	if err := p.AddPrincipal("K", "ImportFunction"); err != nil {
		b.Fatal(err)
	}
	pr := p.principals["K"]
	ch := check{Action: "s3:PutObject", Resource: "arn:aws:s3:::" + BucketName(stack) + "/reports/r.json"}
	cs := &tls.ConnectionState{Version: tls.VersionTLS13}
	b.ResetTimer()
	for b.Loop() {
		a, err := ev.Evaluate(p.request(&pr, ch, cs, false))
		if err != nil || !a.Allowed() {
			b.Fatalf("%+v %v", a, err)
		}
	}
}
