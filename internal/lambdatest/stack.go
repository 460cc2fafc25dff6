package lambdatest

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/credentials"

	"github.com/cebulk/cebulk/internal/awsauthz"
	"github.com/cebulk/cebulk/internal/awstest"
	"github.com/cebulk/cebulk/internal/lambdalocal"
)

// Stack is one test's deployment of template.yaml on the local stack: a
// stack name, the data bucket named after it (created), the roles
// CloudFormation would give its functions, and an authorising proxy
// (internal/awsauthz) in front of moto and of a Lambda Invoke API stand-in.
// Every function started with Stack.Start signs its AWS requests with its own
// access key and gets exactly its role: a request the role (plus the bucket
// policy) does not allow answers AccessDenied, and the test fails naming the
// call and the statement it needs, unless the test calls ExpectDenials.
type Stack struct {
	Name      string // the stack name: functions are "<Name>-export", ...
	Bucket    string // "<Name>-data-123456789012"
	SecretARN string
	Roles     *awsauthz.Roles // the roles enforced
	Invoke    *lambdalocal.InvokeAPI
	URL       string // the proxy's https endpoint

	proxy  *awsauthz.Proxy
	bundle string

	mu     sync.Mutex
	expect bool
	keys   map[string]string // access key id by logical id
}

// StackOptions configure NewStack.
type StackOptions struct {
	// SecretARN is the CE credentials secret (see awstest.NewSecret): the
	// roles' ReadCeSecret statements name it, as they name the secret the
	// stack creates.
	SecretARN string
	// Roles, when set, changes the rendered roles before they are enforced
	// (e.g. Roles.WithoutStatement); denials then name the template's
	// statement the role lacks.
	Roles func(*awsauthz.Roles) (*awsauthz.Roles, error)
	// InvokeAPI is the Lambda Invoke API stand-in behind the proxy (default
	// lambdalocal.NewInvokeAPI(nil)).
	InvokeAPI *lambdalocal.InvokeAPI
}

// process-wide pieces: the rendered template, the evaluator, the CA and the
// record of used statements.
var shared struct {
	once   sync.Once
	err    error
	tpl    *awsauthz.Template
	ev     *awsauthz.Evaluator
	ca     *awsauthz.CA
	bundle string
	usage  *awsauthz.Usage
	root   string
}

func setup(t testing.TB) {
	t.Helper()
	shared.once.Do(func() {
		root := moduleRoot(t)
		shared.root = root
		tool, err := awsauthz.FindTool(root)
		if err != nil {
			shared.err = err
			return
		}
		if shared.tpl, err = awsauthz.Render(context.Background(), filepath.Join(root, "template.yaml"), filepath.Join(root, ".stack", "iam")); err != nil {
			shared.err = err
			return
		}
		if shared.ev, err = awsauthz.StartEvaluator(tool); err != nil {
			shared.err = err
			return
		}
		if shared.ca, err = awsauthz.NewCA(); err != nil {
			shared.err = err
			return
		}
		dir, err := os.MkdirTemp("", "cebulk-ca-")
		if err != nil {
			shared.err = err
			return
		}
		if shared.bundle, err = shared.ca.WriteBundle(dir); err != nil {
			shared.err = err
			return
		}
		shared.usage = awsauthz.NewUsage()
	})
	if shared.err != nil {
		t.Fatalf("local stack IAM enforcement: %v", shared.err)
	}
}

// NewStack renders the template for a fresh stack name, creates its bucket
// and starts its proxy; everything stops when the test ends.
func NewStack(t testing.TB, opts StackOptions) *Stack {
	t.Helper()
	endpoint := awstest.Endpoint(t)
	setup(t)
	b := make([]byte, 5)
	_, _ = rand.Read(b)
	s := &Stack{Name: "cbt-" + hex.EncodeToString(b), SecretARN: opts.SecretARN}
	if s.SecretARN == "" {
		s.SecretARN = "arn:aws:secretsmanager:" + awsauthz.Region + ":" + awsauthz.Account + ":secret:" + s.Name + "-CeSecret-AbCdEf"
	}
	reference, err := shared.tpl.Stack(s.Name, s.SecretARN)
	if err != nil {
		t.Fatal(err)
	}
	s.Roles = reference
	if opts.Roles != nil {
		if s.Roles, err = opts.Roles(reference); err != nil {
			t.Fatal(err)
		}
	}
	s.Bucket = awstest.CreateBucket(t, awsauthz.BucketName(s.Name))
	s.Invoke = opts.InvokeAPI
	if s.Invoke == nil {
		s.Invoke = lambdalocal.NewInvokeAPI(nil)
	}
	invokeSrv := httptest.NewServer(s.Invoke)
	t.Cleanup(func() { invokeSrv.Close(); s.Invoke.Close() })
	s.proxy, err = awsauthz.NewProxy(awsauthz.Options{
		Upstream: endpoint, Lambda: invokeSrv.URL, Evaluator: shared.ev,
		Roles: s.Roles, Reference: reference, AdminKeys: []string{os.Getenv("AWS_ACCESS_KEY_ID")},
		Usage: shared.usage,
	})
	if err != nil {
		t.Fatal(err)
	}
	srv, err := shared.ca.ServeTLS(s.proxy)
	if err != nil {
		t.Fatal(err)
	}
	s.URL = srv.URL
	s.bundle = shared.bundle
	t.Cleanup(func() {
		_ = srv.Close()
		s.mu.Lock()
		expect := s.expect
		s.mu.Unlock()
		if d := s.proxy.Denials(); len(d) > 0 && !expect {
			var lines []string
			for _, x := range d {
				lines = append(lines, "  "+x.String())
			}
			t.Errorf("the local stack denied %d AWS request(s) a deployed stack would deny too:\n%s", len(d), strings.Join(lines, "\n"))
		}
		reportUsage(t)
	})
	return s
}

// FunctionName is the deployed name of a function: "<stack>-<short>".
func (s *Stack) FunctionName(short string) string { return awsauthz.FunctionName(s.Name, short) }

// ExpectDenials tells the stack the test provokes denials on purpose.
func (s *Stack) ExpectDenials() {
	s.mu.Lock()
	s.expect = true
	s.mu.Unlock()
}

// AccessKey returns the access key id of the function logicalID started last
// (empty before Start). A stand-in acting for Lambda with the function's
// execution role (e.g. sending a failed event to the on-failure destination
// "<stack>-FailureQueue" with sqs:SendMessage) signs with it and sends to
// URL, so the role's grant is checked as AWS checks it.
func (s *Stack) AccessKey(logicalID string) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.keys[logicalID]
}

// AWSConfig returns an SDK configuration that acts as the function
// logicalID (started with Start): its access key, the proxy's endpoint, a
// client trusting the proxy's CA.
func (s *Stack) AWSConfig(t testing.TB, logicalID string) aws.Config {
	t.Helper()
	key := s.AccessKey(logicalID)
	if key == "" {
		t.Fatalf("AWSConfig(%s): the function was not started", logicalID)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(shared.ca.PEM)
	hc := awshttp.NewBuildableClient().WithTransportOptions(func(tr *http.Transport) {
		tr.TLSClientConfig = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	})
	return aws.Config{
		Region: awsauthz.Region, BaseEndpoint: aws.String(s.URL), HTTPClient: hc,
		Credentials:                credentials.NewStaticCredentialsProvider(key, "secret-of-"+key, ""),
		RequestChecksumCalculation: aws.RequestChecksumCalculationWhenRequired,
		ResponseChecksumValidation: aws.ResponseChecksumValidationWhenRequired,
	}
}

// Denials returns the requests refused so far.
func (s *Stack) Denials() []awsauthz.Denial { return s.proxy.Denials() }

// Start serves bootstrap as the function logicalID of the template (e.g.
// "ExportFunction") under the runtime emulator: named as the stack names it
// unless opts.Name is set, with DATA_BUCKET and CE_SECRET_ID of the stack,
// its own access key, and AWS_ENDPOINT_URL (and _LAMBDA) pointing at the
// proxy over TLS (AWS_CA_BUNDLE trusts the proxy's CA).
func (s *Stack) Start(t testing.TB, logicalID, bootstrap string, opts Options) *Function {
	t.Helper()
	fn, ok := s.Roles.Function(logicalID)
	if !ok {
		t.Fatalf("template.yaml has no function %s", logicalID)
	}
	b := make([]byte, 8)
	_, _ = rand.Read(b)
	key := "AKIA" + strings.ToUpper(hex.EncodeToString(b))
	if err := s.proxy.AddPrincipal(key, logicalID); err != nil {
		t.Fatal(err)
	}
	s.mu.Lock()
	if s.keys == nil {
		s.keys = map[string]string{}
	}
	s.keys[logicalID] = key
	s.mu.Unlock()
	if opts.Name == "" {
		opts.Name = fn.Name
	}
	env := map[string]string{"DATA_BUCKET": s.Bucket, "CE_SECRET_ID": s.SecretARN}
	for k, v := range opts.Env {
		env[k] = v
	}
	for k, v := range map[string]string{
		"AWS_ENDPOINT_URL": s.URL, "AWS_ENDPOINT_URL_LAMBDA": s.URL, "AWS_CA_BUNDLE": s.bundle,
		"AWS_ACCESS_KEY_ID": key, "AWS_SECRET_ACCESS_KEY": "secret-of-" + key, "AWS_SESSION_TOKEN": "",
		"AWS_REGION": awsauthz.Region, "AWS_DEFAULT_REGION": awsauthz.Region,
	} {
		env[k] = v
	}
	opts.Env = env
	return Start(t, bootstrap, opts)
}

// reportUsage saves the statements this test binary's requests used and
// rewrites .stack/iam/unused.txt from every binary's record.
func reportUsage(t testing.TB) {
	dir := filepath.Join(shared.root, ".stack", "iam")
	wd, _ := os.Getwd()
	rel, _ := filepath.Rel(shared.root, wd)
	if err := shared.usage.Save(filepath.Join(dir, "used-"+strings.ReplaceAll(rel, string(filepath.Separator), "_")+".json")); err != nil {
		t.Logf("save IAM usage: %v", err)
		return
	}
	files, _ := filepath.Glob(filepath.Join(dir, "used-*.json"))
	all, err := awsauthz.LoadUsage(files...)
	if err != nil {
		t.Logf("load IAM usage: %v", err)
		return
	}
	roles, err := shared.tpl.Stack("stack", "secret")
	if err != nil {
		return
	}
	unused := all.Unused(roles)
	text := "# Statements of template.yaml's roles that allowed no request in the test binaries that ran\n# (" + strings.Join(baseNames(files), ", ") + "); regenerated by every end-to-end test.\n" + strings.Join(unused, "\n") + "\n"
	_ = os.WriteFile(filepath.Join(dir, "unused.txt"), []byte(text), 0o644)
}

func baseNames(files []string) []string {
	out := make([]string, len(files))
	for i, f := range files {
		out[i] = strings.TrimSuffix(strings.TrimPrefix(filepath.Base(f), "used-"), ".json")
	}
	return out
}
