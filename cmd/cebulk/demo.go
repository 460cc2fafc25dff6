package main

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	_ "embed"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/aws/aws-lambda-go/events"
	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/cebulk/cebulk/internal/awsauthz"
	"github.com/cebulk/cebulk/internal/cetest"
	"github.com/cebulk/cebulk/internal/lambdalocal"
	"github.com/cebulk/cebulk/internal/localaws"
	"github.com/cebulk/cebulk/internal/mptest"
)

//go:embed demodata/users.csv
var demoUsersCSV []byte

// The demo is the stack "cebulk" as template.yaml names it: its bucket,
// function names and roles are the ones CloudFormation would create.
const (
	demoStack     = "cebulk"
	demoBucket    = demoStack + "-data-" + awsauthz.Account
	demoRegion    = awsauthz.Region
	demoSigKey    = "demo-signature-key"
	demoExportFn  = demoStack + "-export"
	demoImportFn  = demoStack + "-import"
	demoWebhookFn = demoStack + "-webhook"
	demoAdminKey  = "demo"
)

// runDemo runs the whole flow on this machine: the CE emulator with sample
// Mixpanel data, an embedded S3 and Secrets Manager, the three functions'
// real bootstraps under the Lambda runtime emulator, API Gateway and Lambda
// Invoke stand-ins; then a scheduled export with CE calling back through the
// webhook, and a CSV import with bad rows.
func runDemo(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("demo", flag.ContinueOnError)
	fs.SetOutput(stderr)
	out := fs.String("out", "demo-out", "folder for the bucket copy, the function logs and the binaries")
	nEvents := fs.Int("events", 3000, "sample events per day in the emulator")
	nUsers := fs.Int("users", 250, "sample people profiles in the emulator")
	backend := fs.String("backend", "ce", "`backend` the functions run with: ce (CE bulk, on the CE emulator) or mixpanel (Mixpanel's own APIs, on the Mixpanel emulator)")
	timeout := fs.Duration("timeout", 3*time.Minute, "give up after this long")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: cebulk demo [flags]\n\nRuns export, webhook callback and import end to end on this machine, with no cloud account.\nWith -backend mixpanel the same story runs on Mixpanel's own APIs: no CE, no callbacks.")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return &usageError{err}
	}
	if *backend != "ce" && *backend != "mixpanel" {
		return &usageError{fmt.Errorf("demo: -backend %q: want ce or mixpanel", *backend)}
	}
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	abs, err := filepath.Abs(*out)
	if err != nil {
		return err
	}
	d := &demo{out: abs, w: stdout, events: *nEvents, users: *nUsers, backend: *backend}
	defer d.close()
	if err := d.run(ctx); err != nil {
		if d.authz != nil {
			if derr := d.checkDenials(); derr != nil {
				err = fmt.Errorf("%v\n%v", err, derr)
			}
		}
		return fmt.Errorf("demo step %d (%s) failed: %v\nlogs: %s", d.step, d.stepName, err, filepath.Join(abs, "logs"))
	}
	return nil
}

type demo struct {
	out            string
	w              io.Writer
	events, users  int
	step           int
	stepName       string
	closers        []func()
	s3             *s3.Client
	backend        string       // "ce" or "mixpanel"
	fake           *cetest.Fake // the CE emulator (backend ce)
	mp             *mptest.Fake // the Mixpanel emulator (backend mixpanel)
	invoke         *lambdalocal.InvokeAPI
	fns            map[string]*lambdalocal.Function
	authz          *awsauthz.Proxy
	gatewayURL     string
	now            time.Time
	exportWindowTo time.Time
}

func (d *demo) close() {
	for i := len(d.closers) - 1; i >= 0; i-- {
		d.closers[i]()
	}
}

func (d *demo) begin(name string) {
	d.step++
	d.stepName = name
	fmt.Fprintf(d.w, "\n[%d] %s\n", d.step, name)
}

func (d *demo) say(format string, args ...any) {
	fmt.Fprintf(d.w, "    "+format+"\n", args...)
}

// serve serves h on a free loopback port until the demo ends.
func (d *demo) serve(h http.Handler) (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = srv.Serve(l) }()
	d.closers = append(d.closers, func() { _ = srv.Close() })
	return "http://" + l.Addr().String(), nil
}

func (d *demo) run(ctx context.Context) error {
	d.now = time.Now().UTC()
	for _, dir := range []string{"bin", "logs", "bucket"} {
		if err := os.RemoveAll(filepath.Join(d.out, dir)); err != nil {
			return err
		}
		if err := os.MkdirAll(filepath.Join(d.out, dir), 0o755); err != nil {
			return err
		}
	}

	d.begin("build the three bootstraps and the Lambda runtime emulator")
	bins, err := d.build(ctx)
	if err != nil {
		return err
	}

	if d.backend == "mixpanel" {
		d.begin("start the Mixpanel emulator, S3, Secrets Manager, API Gateway and Lambda stand-ins")
	} else {
		d.begin("start the CE emulator, S3, Secrets Manager, API Gateway and Lambda stand-ins")
	}
	if err := d.startServices(ctx, bins); err != nil {
		return err
	}

	d.begin("scheduled export: EventBridge invokes ExportFunction")
	sched, _ := json.Marshal(map[string]any{
		"version": "0", "id": "demo-schedule", "detail-type": "Scheduled Event", "source": "aws.events",
		"account": awsauthz.Account, "time": d.now.Format(time.RFC3339), "region": demoRegion,
		"resources": []string{"arn:aws:events:us-east-1:" + awsauthz.Account + ":rule/cebulk-nightly"}, "detail": map[string]any{},
	})
	res, err := d.fns[demoExportFn].Invoke(ctx, sched)
	if err != nil {
		return err
	}
	if res.Error != nil {
		return res.Error
	}
	d.say("ExportFunction answered: %s", compact(res.Payload))

	if d.mp != nil {
		d.begin("no callback to wait for: ExportFunction collects each day straight from Mixpanel's export")
	} else {
		d.begin("CE finishes the jobs and calls back through the webhook; ExportFunction collects")
	}
	if err := d.waitJobs(ctx, "export-"); err != nil {
		return err
	}
	if d.mp != nil {
		d.say("Mixpanel emulator served %d raw exports and %d engage query pages", d.mp.Count(mptest.RouteExport), d.mp.Count(mptest.RouteEngageQuery))
	} else {
		d.say("callbacks delivered by the CE emulator: %d", len(d.fake.Deliveries()))
	}
	if err := d.printExports(ctx); err != nil {
		return err
	}

	d.begin("import: a CSV with bad rows lands under imports/users/")
	key := "imports/users/demo-users.csv"
	if _, err := d.s3.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String(demoBucket), Key: aws.String(key), Body: bytes.NewReader(demoUsersCSV)}); err != nil {
		return fmt.Errorf("upload %s: %v", key, err)
	}
	head, err := d.s3.HeadObject(ctx, &s3.HeadObjectInput{Bucket: aws.String(demoBucket), Key: aws.String(key)})
	if err != nil {
		return err
	}
	ev, _ := json.Marshal(s3Event(demoBucket, key, aws.ToString(head.ETag), int64(len(demoUsersCSV)), d.now))
	res, err = d.fns[demoImportFn].Invoke(ctx, ev)
	if err != nil {
		return err
	}
	if res.Error != nil {
		return res.Error
	}
	d.say("uploaded s3://%s/%s (%d bytes); ImportFunction answered: %s", demoBucket, key, len(demoUsersCSV), compact(res.Payload))

	if d.mp != nil {
		d.begin("Mixpanel answered every /engage batch; ImportFunction writes the report")
	} else {
		d.begin("CE finishes the upload and calls back; ImportFunction writes the report")
	}
	summaryKey := "reports/imports/users/demo-users.csv/summary.json"
	summary, err := d.waitObject(ctx, summaryKey)
	if err != nil {
		return err
	}
	if err := d.printImport(ctx, summary); err != nil {
		return err
	}

	d.begin("IAM: every AWS request of the functions was authorised against its role")
	if err := d.checkDenials(); err != nil {
		return err
	}
	d.say("no request denied (denials would be in logs/iam.log)")

	d.begin("copy the bucket to disk")
	n, err := localaws.Dump(ctx, d.s3, demoBucket, filepath.Join(d.out, "bucket"))
	if err != nil {
		return err
	}
	d.say("%d objects copied to %s", n, filepath.Join(d.out, "bucket"))

	d.begin("query the lake: the SQL a user runs in Athena, run here on DuckDB")
	if err := d.queryLake(ctx, filepath.Join(d.out, "bucket")); err != nil {
		return err
	}
	fmt.Fprintf(d.w, "\ndemo finished: look at %s (bucket/ holds the data lake, logs/ each function's JSON logs)\n", d.out)
	return nil
}

// build compiles the bootstraps for this machine and the runtime emulator.
func (d *demo) build(ctx context.Context) (map[string]string, error) {
	root, err := moduleRoot()
	if err != nil {
		return nil, err
	}
	bins := map[string]string{}
	targets := []struct{ name, pkg string }{
		{demoExportFn, "./functions/export"},
		{demoImportFn, "./functions/import"},
		{demoWebhookFn, "./functions/webhook"},
		{"aws-lambda-rie", "github.com/aws/aws-lambda-runtime-interface-emulator/cmd/aws-lambda-rie"},
	}
	for _, t := range targets {
		outPath := filepath.Join(d.out, "bin", t.name, "bootstrap")
		if t.name == "aws-lambda-rie" {
			outPath = filepath.Join(d.out, "bin", "aws-lambda-rie")
		}
		start := time.Now()
		cmd := exec.CommandContext(ctx, "go", "build", "-trimpath", "-tags", "lambda.norpc", "-o", outPath, t.pkg)
		cmd.Dir = root
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if b, err := cmd.CombinedOutput(); err != nil {
			return nil, fmt.Errorf("go build %s: %v\n%s", t.pkg, err, b)
		}
		bins[t.name] = outPath
		d.say("built %-16s %s (%s)", t.name, rel(d.out, outPath), time.Since(start).Round(100*time.Millisecond))
	}
	return bins, nil
}

func (d *demo) startServices(ctx context.Context, bins map[string]string) error {
	// The CE emulator: three days of events up to yesterday, and profiles.
	today := d.now.Truncate(24 * time.Hour)
	from := today.AddDate(0, 0, -3)
	d.exportWindowTo = today
	var ceURL, mpURL string
	var secretDoc []byte
	var err error
	if d.backend == "mixpanel" {
		d.mp = mptest.NewFake(mptest.Options{})
		d.mp.SetGenerator(mptest.SampleEvents(1, d.events, d.users, from, today))
		d.mp.SeedProfiles(mptest.SampleProfiles(1, d.users))
		if mpURL, err = d.serve(d.mp); err != nil {
			return err
		}
		d.say("Mixpanel emulator  %s  (%d events over %s..%s, %d profiles, service account)", mpURL, 3*d.events, from.Format(time.DateOnly), today.AddDate(0, 0, -1).Format(time.DateOnly), d.users)
		o := d.mp.Options()
		secretDoc, _ = json.Marshal(map[string]string{"serviceAccountUser": o.Username, "serviceAccountSecret": o.Secret, "projectId": o.ProjectID, "projectToken": o.Token})
	} else {
		d.fake = cetest.NewFake(cetest.Options{SignatureKey: demoSigKey, CompletionDelay: 500 * time.Millisecond, TickInterval: 100 * time.Millisecond})
		d.fake.SeedGenerated("activities", cetest.SampleActivities(1, 3*d.events, from, today))
		d.fake.SeedGenerated("users", cetest.SampleUsers(2, d.users))
		d.fake.Start()
		d.closers = append(d.closers, d.fake.Close)
		if ceURL, err = d.serve(d.fake); err != nil {
			return err
		}
		d.say("CE emulator        %s/elements/api-v2  (%d events over %s..%s, %d profiles, callbacks signed)", ceURL, 3*d.events, from.Format(time.DateOnly), today.AddDate(0, 0, -1).Format(time.DateOnly), d.users)
		creds := d.fake.Credentials()
		secretDoc, _ = json.Marshal(map[string]string{"userSecret": creds.UserSecret, "organizationSecret": creds.OrganizationSecret, "elementToken": creds.ElementToken, "signatureKey": demoSigKey})
	}

	// S3 and Secrets Manager.
	stack := localaws.New(demoRegion)
	awsURL, err := d.serve(stack)
	if err != nil {
		return err
	}
	secretARN := stack.SecretsManager.Put("cebulk/ce", string(secretDoc))
	d.s3 = s3.NewFromConfig(aws.Config{
		Region: demoRegion, BaseEndpoint: aws.String(awsURL),
		Credentials:                credentials.NewStaticCredentialsProvider(demoAdminKey, "demo", ""),
		RequestChecksumCalculation: aws.RequestChecksumCalculationWhenRequired,
		ResponseChecksumValidation: aws.ResponseChecksumValidationWhenRequired,
	}, func(o *s3.Options) { o.UsePathStyle = true })
	if _, err := d.s3.CreateBucket(ctx, &s3.CreateBucketInput{Bucket: aws.String(demoBucket)}); err != nil {
		return fmt.Errorf("create bucket: %v", err)
	}
	d.say("S3 + Secrets Manager %s  (bucket %s, secret %s)", awsURL, demoBucket, "cebulk/ce")

	// Lambda Invoke API stand-in and API Gateway stand-in.
	logf, err := os.Create(filepath.Join(d.out, "logs", "lambda-invoke.log"))
	if err != nil {
		return err
	}
	d.closers = append(d.closers, func() { logf.Close() })
	d.invoke = lambdalocal.NewInvokeAPI(slog.New(slog.NewJSONHandler(logf, nil)))
	d.closers = append(d.closers, d.invoke.Close)
	invokeURL, err := d.serve(d.invoke)
	if err != nil {
		return err
	}
	gw := &lambdalocal.Gateway{}
	d.gatewayURL, err = d.serve(gw)
	if err != nil {
		return err
	}

	// IAM: each function's requests go through the authorising proxy, over
	// TLS, signed with the function's own access key.
	proxyURL, caBundle, err := d.startAuthz(ctx, awsURL, invokeURL, secretARN)
	if err != nil {
		return err
	}

	env := append(os.Environ(),
		"AWS_ENDPOINT_URL="+proxyURL,
		"AWS_ENDPOINT_URL_LAMBDA="+proxyURL,
		"AWS_CA_BUNDLE="+caBundle,
		"AWS_SESSION_TOKEN=",
		"AWS_REGION="+demoRegion, "AWS_DEFAULT_REGION="+demoRegion,
		"AWS_EC2_METADATA_DISABLED=true",
		"AWS_LAMBDA_LOG_FORMAT=JSON",
		"BACKEND="+d.backend,
		"CE_SECRET_ID="+secretARN,
		"DATA_BUCKET="+demoBucket,
		"CALLBACK_URL="+d.gatewayURL+"/callbacks/ce",
		"EXPORT_OBJECTS=activities,users",
		"EXPORT_START="+from.Format(time.DateOnly),
		"EXPORT_TIMEZONE=UTC",
		"EXPORT_LAG=0s",
		"EXPORT_MAX_JOBS=6",
		"IMPORT_CHUNK_RECORDS=50000",
		"EXPORT_FUNCTION_NAME="+demoExportFn,
		"IMPORT_FUNCTION_NAME="+demoImportFn,
		"LOG_LEVEL=info",
	)
	if d.mp != nil {
		env = append(env, "MIXPANEL_BASE_URL="+mpURL)
	} else {
		env = append(env, "CE_BASE_URL="+ceURL+"/elements/api-v2")
	}
	d.fns = map[string]*lambdalocal.Function{}
	logicalIDs := map[string]string{demoExportFn: "ExportFunction", demoImportFn: "ImportFunction", demoWebhookFn: "WebhookFunction"}
	for _, name := range []string{demoExportFn, demoImportFn, demoWebhookFn} {
		f, err := os.Create(filepath.Join(d.out, "logs", name+".log"))
		if err != nil {
			return err
		}
		d.closers = append(d.closers, func() { f.Close() })
		timeout := 900 * time.Second
		if name == demoWebhookFn {
			timeout = 30 * time.Second
		}
		key := "AKIADEMO" + strings.ToUpper(strings.ReplaceAll(strings.TrimPrefix(name, demoStack+"-"), "-", ""))
		if err := d.authz.AddPrincipal(key, logicalIDs[name]); err != nil {
			return err
		}
		fnEnv := append(slices.Clone(env), "AWS_ACCESS_KEY_ID="+key, "AWS_SECRET_ACCESS_KEY=secret-of-"+key)
		fn, err := lambdalocal.Start(ctx, bins["aws-lambda-rie"], bins[name], lambdalocal.Options{Name: name, Timeout: timeout, Env: fnEnv, Output: f})
		if err != nil {
			return err
		}
		d.closers = append(d.closers, fn.Close)
		d.fns[name] = fn
		d.say("%-16s under aws-lambda-rie at %s (logs/%s.log)", name, strings.TrimSuffix(fn.URL, "/2015-03-31/functions/function/invocations"), name)
	}
	d.invoke.Register(demoExportFn, d.fns[demoExportFn])
	d.invoke.Register(demoImportFn, d.fns[demoImportFn])
	gw.Fn = d.fns[demoWebhookFn]
	d.say("API Gateway (HTTP API, payload 2.0) %s  ->  %s", d.gatewayURL, demoWebhookFn)
	d.say("Lambda Invoke API %s  ->  %s, %s", invokeURL, demoExportFn, demoImportFn)
	return nil
}

// startAuthz renders template.yaml's roles for the stack "cebulk", starts
// the IAM evaluator and serves the authorising proxy over TLS in front of the
// embedded S3 and Secrets Manager (awsURL) and the Lambda Invoke stand-in.
// It returns the proxy's URL and the CA bundle the functions must trust.
func (d *demo) startAuthz(ctx context.Context, awsURL, invokeURL, secretARN string) (string, string, error) {
	root, err := moduleRoot()
	if err != nil {
		return "", "", err
	}
	tool, err := awsauthz.FindTool(root)
	if err != nil {
		return "", "", err
	}
	tpl, err := awsauthz.Render(ctx, filepath.Join(root, "template.yaml"), filepath.Join(root, ".stack", "iam"))
	if err != nil {
		return "", "", err
	}
	roles, err := tpl.Stack(demoStack, secretARN)
	if err != nil {
		return "", "", err
	}
	ev, err := awsauthz.StartEvaluator(tool)
	if err != nil {
		return "", "", err
	}
	d.closers = append(d.closers, func() { _ = ev.Close() })
	logf, err := os.Create(filepath.Join(d.out, "logs", "iam.log"))
	if err != nil {
		return "", "", err
	}
	d.closers = append(d.closers, func() { logf.Close() })
	d.authz, err = awsauthz.NewProxy(awsauthz.Options{
		Upstream: awsURL, Lambda: invokeURL, Evaluator: ev, Roles: roles,
		AdminKeys: []string{demoAdminKey}, Log: slog.New(slog.NewJSONHandler(logf, nil)),
	})
	if err != nil {
		return "", "", err
	}
	ca, err := awsauthz.NewCA()
	if err != nil {
		return "", "", err
	}
	bundle, err := ca.WriteBundle(filepath.Join(d.out, "bin"))
	if err != nil {
		return "", "", err
	}
	srv, err := ca.ServeTLS(d.authz)
	if err != nil {
		return "", "", err
	}
	d.closers = append(d.closers, func() { _ = srv.Close() })
	d.say("IAM proxy          %s  (each function signs with its own key and gets its template.yaml role; bucket policy enforced)", srv.URL)
	return srv.URL, bundle, nil
}

// checkDenials fails the demo when the proxy refused any request.
func (d *demo) checkDenials() error {
	denials := d.authz.Denials()
	if len(denials) == 0 {
		return nil
	}
	var lines []string
	for _, x := range denials {
		lines = append(lines, "  "+x.String())
	}
	return fmt.Errorf("%d AWS request(s) denied, as a deployed stack would deny them:\n%s", len(denials), strings.Join(lines, "\n"))
}

type ledgerJob struct {
	ID        string `json:"id"`
	Status    string `json:"status"`
	CEJobID   string `json:"ceJobId"`
	LastError string `json:"lastError"`
}

// waitJobs waits until every ledger job with the prefix is final.
func (d *demo) waitJobs(ctx context.Context, prefix string) error {
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	var last []ledgerJob
	for {
		jobs, err := d.jobs(ctx, prefix)
		if err != nil {
			return err
		}
		last = jobs
		done := len(jobs) > 0
		for _, j := range jobs {
			if j.Status != "DONE" && j.Status != "FAILED" && j.Status != "EXPIRED" {
				done = false
			}
		}
		if done {
			_ = d.invoke.Wait(ctx)
			for _, j := range jobs {
				d.say("job %-38s %-6s (CE job %s)%s", j.ID, j.Status, j.CEJobID, suffixIf(j.LastError != "", ": "+j.LastError))
			}
			for _, j := range jobs {
				if j.Status != "DONE" {
					return fmt.Errorf("job %s ended %s", j.ID, j.Status)
				}
			}
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("jobs not finished in time: %+v", last)
		case <-tick.C:
		}
	}
}

func (d *demo) jobs(ctx context.Context, prefix string) ([]ledgerJob, error) {
	var jobs []ledgerJob
	p := s3.NewListObjectsV2Paginator(d.s3, &s3.ListObjectsV2Input{Bucket: aws.String(demoBucket), Prefix: aws.String("state/jobs/" + prefix)})
	for p.HasMorePages() {
		page, err := p.NextPage(ctx)
		if err != nil {
			return nil, err
		}
		for _, o := range page.Contents {
			b, err := d.read(ctx, *o.Key)
			if err != nil {
				return nil, err
			}
			var j ledgerJob
			if err := json.Unmarshal(b, &j); err != nil {
				return nil, fmt.Errorf("decode %s: %v", *o.Key, err)
			}
			jobs = append(jobs, j)
		}
	}
	return jobs, nil
}

func (d *demo) read(ctx context.Context, key string) ([]byte, error) {
	out, err := d.s3.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String(demoBucket), Key: aws.String(key)})
	if err != nil {
		return nil, err
	}
	defer out.Body.Close()
	return io.ReadAll(out.Body)
}

func (d *demo) waitObject(ctx context.Context, key string) ([]byte, error) {
	for {
		b, err := d.read(ctx, key)
		if err == nil {
			_ = d.invoke.Wait(ctx)
			return b, nil
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("%s did not appear in time", key)
		case <-time.After(200 * time.Millisecond):
		}
	}
}

func (d *demo) printExports(ctx context.Context) error {
	var manifests []string
	p := s3.NewListObjectsV2Paginator(d.s3, &s3.ListObjectsV2Input{Bucket: aws.String(demoBucket), Prefix: aws.String("exports/")})
	for p.HasMorePages() {
		page, err := p.NextPage(ctx)
		if err != nil {
			return err
		}
		for _, o := range page.Contents {
			if strings.HasSuffix(*o.Key, "/_manifest.json") {
				manifests = append(manifests, *o.Key)
			}
		}
	}
	slices.Sort(manifests)
	if len(manifests) == 0 {
		return errors.New("no export partition was published")
	}
	d.say("partitions published:")
	total := int64(0)
	for _, key := range manifests {
		b, err := d.read(ctx, key)
		if err != nil {
			return err
		}
		var m struct {
			Part        string `json:"part"`
			Records     int64  `json:"records"`
			OutOfWindow int64  `json:"outOfWindow"`
			Bytes       int64  `json:"bytes"`
		}
		if err := json.Unmarshal(b, &m); err != nil {
			return fmt.Errorf("decode %s: %v", key, err)
		}
		dir := strings.TrimSuffix(key, "_manifest.json")
		if _, err := d.read(ctx, dir+"_SUCCESS"); err != nil {
			return fmt.Errorf("%s has a manifest but no _SUCCESS", dir)
		}
		total += m.Records
		d.say("  %-52s %6d records  %8d bytes gz  (+ _manifest.json, _SUCCESS)", dir, m.Records, m.Bytes)
	}
	d.say("%d records exported in %d partitions", total, len(manifests))
	return nil
}

func (d *demo) printImport(ctx context.Context, summary []byte) error {
	var s map[string]any
	if err := json.Unmarshal(summary, &s); err != nil {
		return fmt.Errorf("decode summary: %v", err)
	}
	d.say("reports/imports/users/demo-users.csv/summary.json:")
	for _, line := range strings.Split(indent(summary), "\n") {
		d.say("  %s", line)
	}
	b, err := d.read(ctx, "reports/imports/users/demo-users.csv/rejects.jsonl.gz")
	if err != nil {
		return fmt.Errorf("read rejects: %v", err)
	}
	zr, err := gzip.NewReader(bytes.NewReader(b))
	if err != nil {
		return fmt.Errorf("rejects are not gzip: %v", err)
	}
	d.say("reports/imports/users/demo-users.csv/rejects.jsonl.gz:")
	sc := bufio.NewScanner(zr)
	for sc.Scan() {
		d.say("  %s", sc.Text())
	}
	if d.mp != nil {
		d.say("profile updates the Mixpanel emulator applied: %d (profiles now: %d)", len(d.mp.Updates()), len(d.mp.Profiles()))
	} else {
		d.say("records the CE emulator accepted: %d", len(d.fake.Uploaded("users")))
	}
	return sc.Err()
}

// s3Event is the event S3 sends for a new object.
func s3Event(bucket, key, etag string, size int64, at time.Time) events.S3Event {
	return events.S3Event{Records: []events.S3EventRecord{{
		EventVersion: "2.1", EventSource: "aws:s3", AWSRegion: demoRegion, EventTime: at, EventName: "ObjectCreated:Put",
		S3: events.S3Entity{
			SchemaVersion: "1.0", ConfigurationID: "cebulk-imports",
			Bucket: events.S3Bucket{Name: bucket, Arn: "arn:aws:s3:::" + bucket},
			Object: events.S3Object{Key: strings.ReplaceAll(urlEncodeKey(key), "%2F", "/"), Size: size, ETag: strings.Trim(etag, `"`), Sequencer: "0A1B2C3D4E5F678901"},
		},
	}}}
}

func urlEncodeKey(k string) string {
	var b strings.Builder
	for _, c := range []byte(k) {
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', strings.IndexByte("-_.~/", c) >= 0:
			b.WriteByte(c)
		case c == ' ':
			b.WriteByte('+')
		default:
			fmt.Fprintf(&b, "%%%02X", c)
		}
	}
	return b.String()
}

func moduleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("run the demo from the cebulk source tree (no go.mod found above the working directory)")
		}
		dir = parent
	}
}

func compact(b []byte) string {
	var buf bytes.Buffer
	if json.Compact(&buf, b) == nil {
		return buf.String()
	}
	return strings.TrimSpace(string(b))
}

func indent(b []byte) string {
	var buf bytes.Buffer
	if json.Indent(&buf, b, "", "  ") == nil {
		return buf.String()
	}
	return string(b)
}

func rel(base, p string) string {
	if r, err := filepath.Rel(base, p); err == nil {
		return r
	}
	return p
}

func suffixIf(cond bool, s string) string {
	if cond {
		return s
	}
	return ""
}
