package main

import (
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/cebulk/cebulk/internal/awstest"
	"github.com/cebulk/cebulk/internal/cetest"
	"github.com/cebulk/cebulk/internal/exporter"
	"github.com/cebulk/cebulk/internal/lambdalocal"
	"github.com/cebulk/cebulk/internal/lambdatest"
	"github.com/cebulk/cebulk/internal/ledger"
	"github.com/cebulk/cebulk/internal/logging"
	"github.com/cebulk/cebulk/internal/s3stream"
)

// e2e is the real ExportFunction bootstrap under the Lambda runtime
// emulator, with the CE emulator and moto around it.
type e2e struct {
	fn        *lambdatest.Function
	stack     *lambdatest.Stack
	invokeAPI *lambdalocal.InvokeAPI
	fake      *cetest.Fake
	bucket    string
	store     *s3stream.Store
	jobs      *ledger.Store
	today     time.Time         // midnight UTC
	vars      map[string]string // the function's environment, before a start's own
}

// day returns the UTC day offset days from today.
func (x *e2e) day(offset int) string { return x.today.AddDate(0, 0, offset).Format(time.DateOnly) }

// startE2E starts one function. By default it exports activities from the
// day before yesterday with a lag of 24h, so exactly that day is due.
func startE2E(t *testing.T, env map[string]string) *e2e {
	t.Helper()
	return startE2EWith(t, env, lambdatest.StackOptions{})
}

// startE2EWith starts one function on a stack configured by opts (its
// SecretARN is set here).
func startE2EWith(t *testing.T, env map[string]string, opts lambdatest.StackOptions) *e2e {
	t.Helper()
	return startE2EFull(t, env, opts, cetest.Options{}, 120*time.Second)
}

// startE2EProject is startE2EWith with an emulated project configured by
// ceOpts (whole-day queries, a project-time project).
func startE2EProject(t *testing.T, env map[string]string, opts lambdatest.StackOptions, ceOpts cetest.Options) *e2e {
	t.Helper()
	return startE2EFull(t, env, opts, ceOpts, 120*time.Second)
}

// startE2EFull is startE2EWith with CE emulator options and a function
// timeout.
func startE2EFull(t testing.TB, env map[string]string, opts lambdatest.StackOptions, ceOpts cetest.Options, timeout time.Duration) *e2e {
	t.Helper()
	x := newE2E(t, opts, ceOpts, ceSecret)
	x.start(t, env, timeout)
	return x
}

// ceSecret is the secret of a CE stack: the emulator's credentials.
var ceSecret = fmt.Sprintf(`{"userSecret":%q,"organizationSecret":%q,"elementToken":%q}`,
	cetest.DefaultUserSecret, cetest.DefaultOrgSecret, cetest.DefaultElementToken)

// newE2E makes the stack (a secret holding secretDoc, the bucket, the
// roles) and the CE emulator, without starting the function.
func newE2E(t testing.TB, opts lambdatest.StackOptions, ceOpts cetest.Options, secretDoc string) *e2e {
	t.Helper()
	awstest.Endpoint(t)
	srv, fake := cetest.NewServer(t, ceOpts)
	// The function runs with exactly ExportFunction's role from template.yaml.
	opts.SecretARN = awstest.NewSecret(t, secretDoc)
	st := lambdatest.NewStack(t, opts)
	x := &e2e{fake: fake, stack: st, bucket: st.Bucket, today: time.Now().UTC().Truncate(24 * time.Hour)}
	x.store = s3stream.New(awstest.S3(t))
	x.jobs = ledger.New(x.store, x.bucket)
	x.vars = map[string]string{
		"CE_BASE_URL":           cetest.BaseURL(srv),
		"CALLBACK_URL":          "",
		"EXPORT_OBJECTS":        "activities",
		"EXPORT_START":          x.day(-2),
		"EXPORT_TIMEZONE":       "UTC",
		"EXPORT_LAG":            "24h",
		"EXPORT_MAX_JOBS":       "6",
		"LOG_LEVEL":             "debug",
		"AWS_LAMBDA_LOG_FORMAT": "JSON",
	}
	return x
}

// start serves the ExportFunction's bootstrap with x.vars and env on top.
// A function started before is stopped first: a stack update replaces the
// function's configuration, the bucket and its state stay.
func (x *e2e) start(t testing.TB, env map[string]string, timeout time.Duration) {
	t.Helper()
	if x.fn != nil {
		x.fn.Close()
	}
	vars := maps.Clone(x.vars)
	maps.Copy(vars, env)
	x.fn = x.stack.Start(t, "ExportFunction", lambdatest.Build(t, "./functions/export"), lambdatest.Options{
		Timeout: timeout, Env: vars,
	})
	// Its continuations (self-invocations) go through the stack's Invoke
	// API stand-in, with the function's own role.
	x.invokeAPI = x.stack.Invoke
	x.stack.Invoke.Register(x.stack.FunctionName("export"), x.fn.Function)
}

// invoke runs the function and decodes its answer; it fails the test when
// the handler fails.
func (x *e2e) invoke(t testing.TB, payload any) response {
	t.Helper()
	out := x.fn.MustInvoke(t, payload)
	var resp response
	if err := json.Unmarshal(out, &resp); err != nil {
		t.Fatalf("answer is not a response: %v\n%s", err, out)
	}
	return resp
}

// invokeFailing runs the function and expects a handler error.
func (x *e2e) invokeFailing(t *testing.T, payload any) string {
	t.Helper()
	res, err := x.fn.Invoke(t.Context(), payload)
	if err != nil {
		t.Fatalf("invoke: %v", err)
	}
	if res.Error == nil {
		t.Fatalf("invoke(%v) = %s, want a handler error", payload, res.Payload)
	}
	return res.Error.Message
}

func testdata(t *testing.T, name string) json.RawMessage { return readTestdata(t, name) }

// seed seeds n activities spread over [from, to) and returns them by day.
func (x *e2e) seed(n int, from, to time.Time) map[string][]string {
	g := cetest.SampleActivities(11, n, from, to)
	x.fake.SeedGenerated("activities", g)
	byDay := map[string][]string{}
	g.Records(func(r cetest.Record) bool {
		d := r.Time.UTC().Format(time.DateOnly)
		byDay[d] = append(byDay[d], string(r.JSON))
		return true
	})
	return byDay
}

func (x *e2e) read(t *testing.T, key string) ([]byte, bool) {
	t.Helper()
	rc, _, err := x.store.Open(t.Context(), x.bucket, key)
	if errors.Is(err, s3stream.ErrNotFound) {
		return nil, false
	}
	if err != nil {
		t.Fatalf("open %s: %v", key, err)
	}
	defer rc.Close()
	b, err := io.ReadAll(rc)
	if err != nil {
		t.Fatalf("read %s: %v", key, err)
	}
	return b, true
}

func (x *e2e) job(t *testing.T, id string) *ledger.Job {
	t.Helper()
	j, _, err := x.jobs.Get(t.Context(), id)
	if err != nil {
		t.Fatalf("ledger Get(%s): %v", id, err)
	}
	return j
}

// checkPartition checks that a partition is published and holds exactly
// want, each record once, with a manifest that describes its one part.
func (x *e2e) checkPartition(t *testing.T, object, partition string, want []string) exporter.Manifest {
	t.Helper()
	m, data, got := x.readPartition(t, object, partition)
	slices.Sort(got)
	want = slices.Clone(want)
	slices.Sort(want)
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("records of %s/%s (-want +got):\n%s", object, partition, diff)
	}
	sum := sha256.Sum256(data)
	if m.Records != int64(len(want)) || m.Bytes != int64(len(data)) || m.SHA256 != hex.EncodeToString(sum[:]) ||
		m.Object != object || m.Partition != partition || m.Format != "jsonl.gz" || m.Version != 1 || !m.Complete {
		t.Errorf("manifest = %+v, want %d records in %d bytes", m, len(want), len(data))
	}
	return m
}

// readPartition checks that a partition is published (_SUCCESS, a
// manifest, exactly the one part the manifest names) and returns its
// manifest, the part as stored and its lines, in order.
func (x *e2e) readPartition(t *testing.T, object, partition string) (exporter.Manifest, []byte, []string) {
	t.Helper()
	prefix := "exports/" + object + "/" + partition + "/"
	if _, ok := x.read(t, prefix+"_SUCCESS"); !ok {
		t.Fatalf("%s_SUCCESS missing; keys: %v", prefix, awstest.Keys(t, x.bucket, "exports/"))
	}
	raw, ok := x.read(t, prefix+"_manifest.json")
	if !ok {
		t.Fatalf("%s_manifest.json missing", prefix)
	}
	var m exporter.Manifest
	if err := json.Unmarshal(raw, &m); err != nil {
		t.Fatalf("manifest: %v", err)
	}
	var parts []string
	for _, k := range awstest.Keys(t, x.bucket, prefix) {
		if strings.HasPrefix(k, prefix+"part-") {
			parts = append(parts, k)
		}
	}
	if diff := cmp.Diff([]string{prefix + "part-" + m.CEJobID + ".jsonl.gz"}, parts); diff != "" || m.Part != parts[0] {
		t.Errorf("parts of %s (-want +got):\n%s", prefix, diff)
	}
	data, _ := x.read(t, m.Part)
	zr, err := gzip.NewReader(bytes.NewReader(data))
	if err != nil {
		t.Fatalf("part is not gzip: %v", err)
	}
	plain, err := io.ReadAll(zr)
	if err != nil {
		t.Fatalf("gunzip part: %v", err)
	}
	return m, data, strings.Split(strings.TrimSuffix(string(plain), "\n"), "\n")
}

// logLines returns the function's JSON log lines (the emulator's own lines
// are not JSON).
func (x *e2e) logLines(t *testing.T) []map[string]any {
	t.Helper()
	var out []map[string]any
	for line := range strings.SplitSeq(x.fn.Logs(), "\n") {
		if !strings.HasPrefix(line, "{") {
			continue
		}
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Errorf("log line is not JSON: %v: %s", err, line)
			continue
		}
		out = append(out, m)
	}
	return out
}

func startedIDs(r *exporter.RunResult) []string {
	var ids []string
	for _, s := range r.Started {
		ids = append(ids, s.JobID)
	}
	return ids
}

func TestE2EScheduledRunAndSweep(t *testing.T) {
	x := startE2E(t, map[string]string{"EXPORT_OBJECTS": "activities,users"})
	d := x.day(-2)
	byDay := x.seed(3000, x.today.AddDate(0, 0, -3).Add(12*time.Hour), x.today.AddDate(0, 0, -1).Add(12*time.Hour))
	users := cetest.SampleUsers(5, 120)
	x.fake.SeedGenerated("users", users)

	run := x.invoke(t, testdata(t, "schedule-event.json"))
	want := []string{"export-activities-" + d, "export-users-20261126T020000Z"}
	if run.Run == nil || !slices.Equal(startedIDs(run.Run), want) {
		t.Fatalf("scheduled run = %+v, want %v started", run.Run, want)
	}
	sweep := x.invoke(t, testdata(t, "sweep.json"))
	if sweep.Sweep == nil || len(sweep.Sweep.Collected) != 2 {
		t.Fatalf("sweep = %+v, want two collects", sweep.Sweep)
	}
	for _, c := range sweep.Sweep.Collected {
		if c.Outcome != exporter.OutcomeCollected {
			t.Errorf("collect %+v", c)
		}
	}

	if len(byDay[d]) < 1000 {
		t.Fatalf("only %d events on %s; the seed is wrong", len(byDay[d]), d)
	}
	m := x.checkPartition(t, "activities", "dt="+d, byDay[d])
	if from := x.today.AddDate(0, 0, -2); !m.Window.From.Equal(from) || !m.Window.To.Equal(from.AddDate(0, 0, 1)) || m.OutOfWindow != 0 {
		t.Errorf("manifest window %+v, outOfWindow %d", m.Window, m.OutOfWindow)
	}
	var allUsers []string
	users.Records(func(r cetest.Record) bool { allUsers = append(allUsers, string(r.JSON)); return true })
	x.checkPartition(t, "users", "snapshot=2026-11-26T020000Z", allUsers)
	for _, id := range want {
		if j := x.job(t, id); j.Status != ledger.StatusDone {
			t.Errorf("job %s is %s, want DONE", id, j.Status)
		}
	}
	if b, ok := x.read(t, "state/watermarks/activities.json"); !ok || !strings.Contains(string(b), `"next":"`+x.day(-1)+`"`) {
		t.Errorf("watermark = %s, want next %s", b, x.day(-1))
	}

	// The same event again (a Lambda retry, or EventBridge delivering it
	// late: the function's clock is days past the event's hour) and another
	// sweep: nothing new, since the event's time names the snapshot.
	again := x.invoke(t, testdata(t, "schedule-event.json"))
	if len(again.Run.Started) != 0 {
		t.Errorf("repeated run started %v", startedIDs(again.Run))
	}
	if s := x.invoke(t, testdata(t, "sweep.json")); s.Sweep.Checked != 0 {
		t.Errorf("repeated sweep checked %d jobs", s.Sweep.Checked)
	}
	if got := x.fake.Requests("POST /bulk/query"); got != 2 {
		t.Errorf("CE jobs started = %d, want 2", got)
	}

	// An unknown action is an error.
	x.invokeFailing(t, map[string]string{"action": "export"})

	// Logs: JSON, one line per step with the job's attributes, no secrets.
	logs := x.fn.Logs()
	for _, s := range []string{cetest.DefaultUserSecret, cetest.DefaultOrgSecret, cetest.DefaultElementToken} {
		if strings.Contains(logs, s) {
			t.Errorf("logs contain a CE secret")
		}
	}
	var done map[string]any
	for _, l := range x.logLines(t) {
		if l["message"] == "export job done" && l["object"] == "activities" {
			done = l
		}
	}
	for _, k := range []string{"requestId", "jobId", "object", "window", "records", "bytes", "durationMs"} {
		if _, ok := done[k]; !ok {
			t.Errorf("log line %v has no %q", done, k)
		}
	}
}

func TestE2EBackfillThreeDays(t *testing.T) {
	x := startE2E(t, nil)
	byDay := x.seed(2400, x.today.AddDate(0, 0, -6), x.today.AddDate(0, 0, -2))
	days := []string{x.day(-5), x.day(-4), x.day(-3)}
	run := x.invoke(t, map[string]any{"action": "run", "objects": []string{"activities"}, "from": days[0], "to": x.day(-2)})
	var want []string
	for _, d := range days {
		want = append(want, "export-activities-"+d)
	}
	if diff := cmp.Diff(want, startedIDs(run.Run)); diff != "" {
		t.Fatalf("backfill started (-want +got):\n%s", diff)
	}
	x.invoke(t, testdata(t, "sweep.json"))
	for _, d := range days {
		x.checkPartition(t, "activities", "dt="+d, byDay[d])
	}
	if _, ok := x.read(t, "state/watermarks/activities.json"); ok {
		t.Errorf("a backfill created the watermark")
	}
}

func TestE2ECutDownloadIsRetried(t *testing.T) {
	x := startE2E(t, nil)
	d := x.day(-2)
	byDay := x.seed(3000, x.today.AddDate(0, 0, -2), x.today.AddDate(0, 0, -1))
	run := x.invoke(t, testdata(t, "run.json"))
	id := "export-activities-" + d
	if !slices.Equal(startedIDs(run.Run), []string{id}) {
		t.Fatalf("run started %v", startedIDs(run.Run))
	}

	x.fake.CutNextDownload(64 << 10)
	c := x.invoke(t, map[string]string{"action": "collect", "jobId": id})
	if c.Collect.Outcome != exporter.OutcomeRetry || !strings.Contains(c.Collect.Error, "unexpected EOF") {
		t.Errorf("collect = %+v, want a recorded retry naming the cut download", c.Collect)
	}
	if keys := awstest.Keys(t, x.bucket, "exports/"); len(keys) != 0 {
		t.Errorf("a cut download left %v", keys)
	}
	if j := x.job(t, id); j.Status != ledger.StatusPending || j.Attempts != 2 {
		t.Errorf("job %s: %s, attempt %d; want PENDING, 2", id, j.Status, j.Attempts)
	}

	s := x.invoke(t, testdata(t, "sweep.json"))
	if len(s.Sweep.Collected) != 1 || s.Sweep.Collected[0].Outcome != exporter.OutcomeCollected {
		t.Fatalf("sweep = %+v, want the job collected", s.Sweep)
	}
	x.checkPartition(t, "activities", "dt="+d, byDay[d])
	if got := x.fake.Requests("GET /activities"); got != 2 {
		t.Errorf("downloads = %d, want 2", got)
	}
}

// TestE2ECEErrorIsRetriedThenFailed runs at LogLevel DEBUG and at WARN:
// the JobsFailed metric line must pass Lambda's log-level filter at both.
func TestE2ECEErrorIsRetriedThenFailed(t *testing.T) {
	for _, level := range []string{"DEBUG", "WARN"} {
		t.Run(level, func(t *testing.T) { testCEErrorIsRetriedThenFailed(t, level) })
	}
}

func testCEErrorIsRetriedThenFailed(t *testing.T, level string) {
	x := startE2E(t, map[string]string{"LOG_LEVEL": level, "AWS_LAMBDA_LOG_LEVEL": level})
	x.seed(200, x.today.AddDate(0, 0, -2), x.today.AddDate(0, 0, -1))
	const msg = "Mixpanel refused the export: rate limited"
	id := "export-activities-" + x.day(-2)

	x.fake.SetNextJobOutcome("ERROR", msg)
	x.invoke(t, testdata(t, "run.json"))
	for range 2 {
		x.fake.SetNextJobOutcome("ERROR", msg)
		s := x.invoke(t, testdata(t, "sweep.json"))
		if !slices.Equal(s.Sweep.Restarted, []string{id}) {
			t.Fatalf("sweep = %+v, want %s restarted", s.Sweep, id)
		}
	}
	s := x.invoke(t, testdata(t, "sweep.json"))
	if !slices.Equal(s.Sweep.Failed, []string{id}) {
		t.Fatalf("sweep = %+v, want %s failed", s.Sweep, id)
	}
	j := x.job(t, id)
	if j.Status != ledger.StatusFailed || j.Attempts != 3 || !strings.Contains(j.LastError, msg) || j.CE == nil || j.CE.Error != msg {
		t.Errorf("job = %+v (CE %+v), want FAILED after 3 attempts with CE's error", j, j.CE)
	}
	if got := x.fake.Requests("POST /bulk/query"); got != 3 {
		t.Errorf("CE jobs = %d, want 3", got)
	}
	if keys := awstest.Keys(t, x.bucket, "exports/"); len(keys) != 0 {
		t.Errorf("a failed job left %v", keys)
	}
	metric := 0
	for _, l := range x.logLines(t) {
		if _, ok := l["_aws"]; ok && l["JobsFailed"] == float64(1) && l["Function"] == "export" {
			// What CloudWatch gets: the line as Lambda's filter sees it.
			if line, _ := json.Marshal(l); logging.LambdaKeeps(line, level) {
				metric++
			} else {
				t.Errorf("Lambda's log-level filter at %s drops the metric line %s", level, line)
			}
		}
	}
	if metric != 1 {
		t.Errorf("JobsFailed metric lines CloudWatch receives = %d, want 1", metric)
	}
}
