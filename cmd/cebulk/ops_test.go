package main

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/google/go-cmp/cmp"

	"github.com/cebulk/cebulk/internal/awstest"
	"github.com/cebulk/cebulk/internal/cetest"
	"github.com/cebulk/cebulk/internal/exporter"
	"github.com/cebulk/cebulk/internal/ledger"
	"github.com/cebulk/cebulk/internal/s3stream"
)

// opsStack is what one run of an operator command talks to: the CE
// emulator and a moto bucket and secret, set in the environment the way the
// functions read it.
type opsStack struct {
	fake   *cetest.Fake
	bucket string
	s3     *s3.Client
	jobs   *ledger.Store
}

// newOpsStack starts the emulator (seeded with three days of sample events
// ending today at 00:00 UTC, 24 an hour apart each day, and 10 people) and a
// bucket, and sets CE_BASE_URL, CE_SECRET_ID and DATA_BUCKET. hook, when
// set, sees every CE request before the emulator serves it.
func newOpsStack(t *testing.T, opts cetest.Options, hook func(*cetest.Fake, *http.Request)) *opsStack {
	t.Helper()
	awstest.Endpoint(t)
	clearOpsEnv(t)
	srv, fake := cetest.NewServer(t, opts)
	today := time.Now().UTC().Truncate(24 * time.Hour)
	fake.SeedGenerated("activities", cetest.SampleActivities(1, 72, today.AddDate(0, 0, -3), today))
	fake.SeedGenerated("users", cetest.SampleUsers(1, 10))
	base := cetest.BaseURL(srv)
	if hook != nil {
		wrap := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			hook(fake, r)
			fake.ServeHTTP(w, r)
		}))
		t.Cleanup(wrap.Close)
		base = wrap.URL + "/elements/api-v2"
	}
	st := &opsStack{fake: fake, bucket: awstest.NewBucket(t), s3: awstest.S3(t)}
	st.jobs = ledger.New(s3stream.New(st.s3), st.bucket)
	secret := awstest.NewSecret(t, fmt.Sprintf(`{"userSecret":%q,"organizationSecret":%q,"elementToken":%q}`,
		cetest.DefaultUserSecret, cetest.DefaultOrgSecret, cetest.DefaultElementToken))
	t.Setenv("CE_BASE_URL", base)
	t.Setenv("CE_SECRET_ID", secret)
	t.Setenv("DATA_BUCKET", st.bucket)
	return st
}

// slowCE makes CE jobs run until the nth status read of any job: the
// emulator's clock jumps two hours ahead when it comes. The commands then
// see RUNNING first and poll again, whatever the machine's speed.
func slowCE(n int) (cetest.Options, func(*cetest.Fake, *http.Request)) {
	var (
		mu     sync.Mutex
		reads  int
		offset time.Duration
	)
	now := func() time.Time {
		mu.Lock()
		defer mu.Unlock()
		return time.Now().Add(offset)
	}
	hook := func(_ *cetest.Fake, r *http.Request) {
		if !strings.HasSuffix(r.URL.Path, "/status") {
			return
		}
		mu.Lock()
		defer mu.Unlock()
		if reads++; reads == n {
			offset = 2 * time.Hour
		}
	}
	return cetest.Options{Now: now, CompletionDelay: time.Hour}, hook
}

// clearOpsEnv empties every variable the commands read, so that the
// developer's environment does not leak into a test.
func clearOpsEnv(t *testing.T) {
	t.Helper()
	for _, k := range []string{"CE_BASE_URL", "CE_SECRET_ID", "DATA_BUCKET", "LOG_LEVEL", "CALLBACK_URL",
		"EXPORT_OBJECTS", "EXPORT_START", "EXPORT_TIMEZONE", "EXPORT_LAG", "EXPORT_MAX_JOBS", "EXPORT_QUERIES_PER_HOUR", "EXPORT_TIME_BASIS", "EXPORT_LOOKBACK", "IMPORT_CHUNK_RECORDS"} {
		t.Setenv(k, "")
	}
}

// exportJobs returns the status of every export job in the ledger.
func (st *opsStack) exportJobs(t *testing.T) map[string]ledger.Status {
	t.Helper()
	got := map[string]ledger.Status{}
	for j, err := range st.jobs.List(t.Context(), "export-") {
		if err != nil {
			t.Fatalf("list jobs: %v", err)
		}
		got[j.ID] = j.Status
	}
	return got
}

// published returns the partitions under exports/ that have a _SUCCESS.
func (st *opsStack) published(t *testing.T) []string {
	t.Helper()
	var got []string
	for _, k := range awstest.Keys(t, st.bucket, "exports/") {
		if p, ok := strings.CutSuffix(k, "/_SUCCESS"); ok {
			got = append(got, strings.TrimPrefix(p, "exports/"))
		}
	}
	slices.Sort(got)
	return got
}

func (st *opsStack) get(t *testing.T, key string) []byte {
	t.Helper()
	out, err := st.s3.GetObject(t.Context(), &s3.GetObjectInput{Bucket: &st.bucket, Key: &key})
	if err != nil {
		t.Fatalf("GetObject(%s): %v", key, err)
	}
	defer out.Body.Close()
	b, err := io.ReadAll(out.Body)
	if err != nil {
		t.Fatalf("read %s: %v", key, err)
	}
	return b
}

func (st *opsStack) put(t *testing.T, key string, data []byte) {
	t.Helper()
	if _, err := st.s3.PutObject(t.Context(), &s3.PutObjectInput{Bucket: &st.bucket, Key: &key, Body: bytes.NewReader(data)}); err != nil {
		t.Fatalf("PutObject(%s): %v", key, err)
	}
}

// runCommand runs the CLI as main does and returns the exit status and
// both outputs; the error is written to stderr as main writes it.
func runCommand(ctx context.Context, t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errOut bytes.Buffer
	err := run(ctx, args, &out, &errOut)
	code = exitCode(err, &errOut)
	return code, out.String(), errOut.String()
}

func TestExportCommand(t *testing.T) {
	// The expected day partitions and users snapshot are named from the
	// wall clock, as the command names them: keep the test off an hour
	// boundary so both read the same hour.
	awayFromHourBoundary(t, 30*time.Second)
	today := time.Now().UTC().Truncate(24 * time.Hour)
	day := func(n int) string { return today.AddDate(0, 0, n).Format(time.DateOnly) }
	snapshot := exporter.SnapshotJobID("users", time.Now())
	// failEveryJob makes every CE query job end ERROR.
	failEveryJob := func(fake *cetest.Fake, r *http.Request) {
		if r.Method == http.MethodPost && strings.HasSuffix(r.URL.Path, "/bulk/query") {
			fake.SetNextJobOutcome(cetest.StatusError, "Mixpanel export failed (forced)")
		}
	}
	tests := []struct {
		name       string
		opts       cetest.Options
		hook       func(*cetest.Fake, *http.Request)
		interrupt  bool // ctrl-C at the first CE status poll
		slowPolls  int  // CE jobs finish at this status read (slowCE); 0: at once
		args       []string
		wantCode   int
		wantStdout []string // substrings; {bucket} is replaced
		wantStderr []string
		wantJobs   map[string]ledger.Status
		wantParts  []string
	}{
		{
			name: "two-day backfill",
			// The first sweep finds both jobs running.
			slowPolls: 3,
			args:      []string{"-from", day(-3), "-to", day(-1)},
			wantStdout: []string{
				"backfill of activities from " + day(-3) + " to " + day(-1) + " (exclusive), timezone UTC",
				"started export-activities-" + day(-3) + "  s3://{bucket}/exports/activities/dt=" + day(-3) + "/  CE job ",
				"DONE    export-activities-" + day(-3) + "  records=24  s3://{bucket}/exports/activities/dt=" + day(-3) + "/\n",
				"DONE    export-activities-" + day(-2) + "  records=24  s3://{bucket}/exports/activities/dt=" + day(-2) + "/\n",
				"export: 2 jobs: 2 DONE\n",
			},
			wantJobs:  map[string]ledger.Status{"export-activities-" + day(-3): ledger.StatusDone, "export-activities-" + day(-2): ledger.StatusDone},
			wantParts: []string{"activities/dt=" + day(-3), "activities/dt=" + day(-2)},
		},
		{
			name: "scheduled run from the watermarks",
			args: []string{"-objects", "activities,users", "-start", day(-2), "-lag", "0s"},
			wantStdout: []string{
				"scheduled run of activities,users from the watermarks, timezone UTC, lag 0s",
				"DONE    export-activities-" + day(-2) + "  records=24",
				"DONE    export-activities-" + day(-1) + "  records=24",
				"DONE    " + snapshot + "  records=10",
				"export: 3 jobs: 3 DONE\n",
				"watermark activities: the run planned from " + day(-2) + "\n",
				"watermark activities: first day not yet exported is now " + day(0) + "\n",
			},
			wantJobs: map[string]ledger.Status{
				"export-activities-" + day(-2): ledger.StatusDone, "export-activities-" + day(-1): ledger.StatusDone, snapshot: ledger.StatusDone,
			},
			wantParts: []string{"activities/dt=" + day(-2), "activities/dt=" + day(-1),
				"users/snapshot=" + time.Now().UTC().Truncate(time.Hour).Format("2006-01-02T150405Z")},
		},
		{
			name:     "CE ends every job ERROR",
			hook:     failEveryJob,
			args:     []string{"-objects", "activities", "-from", day(-2), "-to", day(-1)},
			wantCode: 1,
			wantStdout: []string{
				"FAILED  export-activities-" + day(-2) + "  records=0  s3://{bucket}/exports/activities/dt=" + day(-2) + "/  CE job ",
				"ended ERROR: Mixpanel export failed (forced)",
				"export: 1 job: 1 FAILED\n",
			},
			wantStderr: []string{"1 job ended FAILED or EXPIRED: export-activities-" + day(-2)},
			wantJobs:   map[string]ledger.Status{"export-activities-" + day(-2): ledger.StatusFailed},
		},
		{
			name:       "the wait runs out",
			opts:       cetest.Options{CompletionDelay: time.Hour},
			args:       []string{"-from", day(-2), "-to", day(-1), "-wait", "50ms"},
			wantCode:   1,
			wantStdout: []string{"export: 1 job: 1 not final\n"},
			wantStderr: []string{
				"the wait of 50ms ran out with 1 job not final: export-activities-" + day(-2) + " (PENDING, CE RUNNING)",
				"the ExportFunction's sweep picks them up",
			},
			wantJobs: map[string]ledger.Status{"export-activities-" + day(-2): ledger.StatusPending},
		},
		{
			name:       "no wait",
			opts:       cetest.Options{CompletionDelay: time.Hour},
			args:       []string{"-from", day(-2), "-to", day(-1), "-wait", "0"},
			wantStdout: []string{"not waiting (-wait 0): the ExportFunction's sweep collects the 1 job started\n"},
			wantJobs:   map[string]ledger.Status{"export-activities-" + day(-2): ledger.StatusPending},
		},
		{
			name:       "ctrl-C while waiting",
			opts:       cetest.Options{CompletionDelay: time.Hour},
			interrupt:  true,
			args:       []string{"-from", day(-2), "-to", day(-1)},
			wantCode:   1,
			wantStderr: []string{"interrupted with 1 job not final: export-activities-" + day(-2), "the ExportFunction's sweep picks them up"},
			wantJobs:   map[string]ledger.Status{"export-activities-" + day(-2): ledger.StatusPending},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithCancel(t.Context())
			defer cancel()
			opts, hook := tc.opts, tc.hook
			if tc.slowPolls > 0 {
				opts, hook = slowCE(tc.slowPolls)
			}
			if tc.interrupt {
				hook = func(_ *cetest.Fake, r *http.Request) {
					if strings.HasSuffix(r.URL.Path, "/status") {
						cancel()
					}
				}
			}
			st := newOpsStack(t, opts, hook)
			code, stdout, stderr := runCommand(ctx, t, append([]string{"export", "-poll", "10ms"}, tc.args...)...)
			if code != tc.wantCode {
				t.Errorf("cebulk export %q: exit status %d, want %d\nstdout:\n%s\nstderr:\n%s", tc.args, code, tc.wantCode, stdout, stderr)
			}
			for _, want := range tc.wantStdout {
				if want = strings.ReplaceAll(want, "{bucket}", st.bucket); !strings.Contains(stdout, want) {
					t.Errorf("stdout lacks %q:\n%s", want, stdout)
				}
			}
			for _, want := range tc.wantStderr {
				if !strings.Contains(stderr, want) {
					t.Errorf("stderr lacks %q:\n%s", want, stderr)
				}
			}
			if diff := cmp.Diff(tc.wantJobs, st.exportJobs(t)); diff != "" {
				t.Errorf("ledger jobs (-want +got):\n%s", diff)
			}
			want := slices.Sorted(slices.Values(tc.wantParts))
			if diff := cmp.Diff(want, st.published(t)); diff != "" {
				t.Errorf("published partitions (-want +got):\n%s", diff)
			}
		})
	}
}

// usersCSV has four rows; the second (line 3) has no $distinct_id.
const usersCSV = `$distinct_id,$email,plan
u-1,ada@example.com,pro
,nobody@example.com,free
u-3,grace@example.com,team
u-4,alan@example.com,free
`

func TestImportCommand(t *testing.T) {
	const (
		key    = "imports/users/small.csv"
		dryKey = "imports/users/dry-run/small.csv"
	)
	tests := []struct {
		name       string
		slowPolls  int // CE jobs finish at this status read (slowCE); 0: at once
		key        string
		args       []string // {bucket} is replaced
		runs       int      // times the command runs (1 if 0); the last is checked
		wantCode   int
		wantStdout []string
		wantStderr []string
		wantReport string // the report folder, under reports/
		wantLines  []int  // the rejected rows
		wantSent   int
		throttle   *cetest.Throttle // installed before the run
	}{
		{
			name:       "three 429s on the upload are waited out",
			key:        key,
			args:       []string{"-key", key},
			throttle:   &cetest.Throttle{Suffix: "/bulk/users", Calls: 3, RetryAfter: "0"},
			wantStdout: []string{"read through: 4 records, 3 valid, 1 rejected; 1 chunk sent to CE\n", "status PARTIAL"},
			wantReport: key, wantLines: []int{3}, wantSent: 3,
		},
		{
			name: "a CSV with a bad row",
			// The upload's first status read finds it running, so the
			// command polls Finalize.
			slowPolls: 2,
			key:       key,
			args:      []string{"-object", "users", "s3://{bucket}/" + key},
			wantStdout: []string{
				"(users, 127 bytes, ETag ",
				"read through: 4 records, 3 valid, 1 rejected; 1 chunk sent to CE\n",
				"waiting for CE to finish the upload jobs",
				"status PARTIAL: 4 records: 3 valid, 1 rejected; 3 sent: CE accepted 3, failed 0; 0 not sent\n",
				"summary:   s3://{bucket}/reports/" + key + "/summary.json\n",
				"rejects:   s3://{bucket}/reports/" + key + "/rejects.jsonl.gz\n",
			},
			wantReport: key, wantLines: []int{3}, wantSent: 3,
		},
		{
			name: "resumed in a loop after every chunk",
			key:  key,
			args: []string{"-key", key, "-chunk-records", "1", "-max-chunks", "1"},
			wantStdout: []string{
				"checkpoint after chunk 1 (1 records read): resuming\n",
				"checkpoint after chunk 2 (3 records read): resuming\n",
				"checkpoint after chunk 3 (4 records read): resuming\n",
				"read through: 4 records, 3 valid, 1 rejected; 3 chunks sent to CE\n",
				"status PARTIAL",
			},
			wantReport: key, wantLines: []int{3}, wantSent: 3,
		},
		{
			name:       "run again: the same version is not imported twice",
			key:        key,
			args:       []string{key}, // a key in DATA_BUCKET
			runs:       2,
			wantStdout: []string{"imported before, or is being imported elsewhere", "status PARTIAL"},
			wantReport: key, wantLines: []int{3}, wantSent: 3,
		},
		{
			name: "dry run",
			key:  dryKey,
			args: []string{"-dry-run", "-key", dryKey},
			wantStdout: []string{
				"dry run: validated only",
				"read through: 4 records, 3 valid, 1 rejected; 1 chunk validated\n",
				"status PARTIAL: 4 records: 3 valid, 1 rejected (dry run: nothing sent)\n",
			},
			wantReport: dryKey, wantLines: []int{3}, wantSent: 0,
		},
		{
			name:       "-strict fails a PARTIAL import",
			key:        key,
			args:       []string{"-strict", "-key", key},
			wantCode:   1,
			wantStderr: []string{"PARTIAL (-strict): 1 rejected, 0 failed at CE, 0 not sent"},
			wantReport: key, wantLines: []int{3}, wantSent: 3,
		},
		{
			name:       "no such object",
			args:       []string{"-key", "imports/users/missing.csv"},
			wantCode:   1,
			wantStderr: []string{"import: s3://{bucket}/imports/users/missing.csv: no such object\n"},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var opts cetest.Options
			var hook func(*cetest.Fake, *http.Request)
			if tc.slowPolls > 0 {
				opts, hook = slowCE(tc.slowPolls)
			}
			st := newOpsStack(t, opts, hook)
			if tc.key != "" {
				st.put(t, tc.key, []byte(usersCSV))
			}
			if tc.throttle != nil {
				st.fake.Throttle(*tc.throttle)
			}
			args := []string{"import", "-poll", "10ms"}
			for _, a := range tc.args {
				args = append(args, strings.ReplaceAll(a, "{bucket}", st.bucket))
			}
			var code int
			var stdout, stderr string
			for range max(1, tc.runs) {
				code, stdout, stderr = runCommand(t.Context(), t, args...)
			}
			if code != tc.wantCode {
				t.Errorf("cebulk %q: exit status %d, want %d\nstdout:\n%s\nstderr:\n%s", args, code, tc.wantCode, stdout, stderr)
			}
			for _, want := range tc.wantStdout {
				if want = strings.ReplaceAll(want, "{bucket}", st.bucket); !strings.Contains(stdout, want) {
					t.Errorf("stdout lacks %q:\n%s", want, stdout)
				}
			}
			for _, want := range tc.wantStderr {
				if want = strings.ReplaceAll(want, "{bucket}", st.bucket); !strings.Contains(stderr, want) {
					t.Errorf("stderr lacks %q:\n%s", want, stderr)
				}
			}
			if got := len(st.fake.Uploaded("users")); got != tc.wantSent {
				t.Errorf("records CE accepted = %d, want %d", got, tc.wantSent)
			}
			if tc.throttle != nil {
				if got := st.fake.Requests("POST /bulk/users"); got != tc.throttle.Calls+1 {
					t.Errorf("upload requests = %d, want %d refused and 1 accepted", got, tc.throttle.Calls)
				}
			}
			if tc.wantReport == "" {
				return
			}
			var summary struct {
				Status                   string
				Records, Valid, Rejected int64
			}
			if err := json.Unmarshal(st.get(t, "reports/"+tc.wantReport+"/summary.json"), &summary); err != nil {
				t.Fatalf("decode summary: %v", err)
			}
			if summary.Status != "PARTIAL" || summary.Records != 4 || summary.Valid != 3 || summary.Rejected != 1 {
				t.Errorf("summary = %+v, want PARTIAL with 4 records, 3 valid, 1 rejected", summary)
			}
			zr, err := gzip.NewReader(bytes.NewReader(st.get(t, "reports/"+tc.wantReport+"/rejects.jsonl.gz")))
			if err != nil {
				t.Fatalf("rejects are not gzip: %v", err)
			}
			var lines []int
			for dec := json.NewDecoder(zr); dec.More(); {
				var rej struct{ Line int }
				if err := dec.Decode(&rej); err != nil {
					t.Fatalf("decode rejects: %v", err)
				}
				lines = append(lines, rej.Line)
			}
			if diff := cmp.Diff(tc.wantLines, lines); diff != "" {
				t.Errorf("rejected lines (-want +got):\n%s", diff)
			}
		})
	}
}

// TestOpsUsage checks the arguments the commands refuse before they touch
// the environment, and the configuration they require.
func TestOpsUsage(t *testing.T) {
	tests := []struct {
		name       string
		args       []string
		env        map[string]string
		wantCode   int
		wantStderr string
	}{
		{"export -h", []string{"export", "-h"}, nil, 0, "-max-jobs"},
		{"export -from without -to", []string{"export", "-from", "2026-11-01"}, nil, 2, "both -from and -to"},
		{"export -to before -from", []string{"export", "-from", "2026-11-03", "-to", "2026-11-01"}, nil, 2, "-to is exclusive"},
		{"export a bad day", []string{"export", "-from", "2026-11-1", "-to", "2026-11-03"}, nil, 2, `-from="2026-11-1"`},
		{"export an unknown object", []string{"export", "-objects", "events"}, nil, 2, `unknown object "events"`},
		{"export a bad EXPORT_TIMEZONE", []string{"export"}, map[string]string{"EXPORT_TIMEZONE": "Mars/Olympus"}, 2, `EXPORT_TIMEZONE="Mars/Olympus"`},
		{"export -timezone overrides the env", []string{"export", "-timezone", "Nowhere"}, map[string]string{"EXPORT_TIMEZONE": "UTC"}, 2, `-timezone="Nowhere"`},
		{"export -max-jobs out of range", []string{"export", "-max-jobs", "61"}, nil, 2, `-max-jobs="61"`},
		{"export -poll 0", []string{"export", "-poll", "0"}, nil, 2, "-poll must be positive"},
		{"export extra argument", []string{"export", "now"}, nil, 2, "unexpected arguments"},
		{"export without configuration", []string{"export"}, nil, 1, "CE_SECRET_ID is required"},
		{"export a bad -log-level", []string{"export", "-log-level", "loud"}, map[string]string{"CE_SECRET_ID": "s", "DATA_BUCKET": "b"}, 2, `-log-level="loud"`},
		{"import -h", []string{"import", "-h"}, nil, 0, "-dry-run"},
		{"import no object", []string{"import"}, nil, 2, "which object?"},
		{"import both argument and -key", []string{"import", "-key", "imports/users/a.csv", "imports/users/b.csv"}, nil, 2, "not both"},
		{"import a bucket without key", []string{"import", "s3://data"}, nil, 2, "want s3://<bucket>/<key>"},
		{"import a key outside imports/", []string{"import", "-key", "exports/users/a.csv"}, nil, 2, "is not under imports/"},
		{"import an unknown object", []string{"import", "-key", "imports/events/a.csv"}, nil, 2, `unknown object "events"`},
		{"import a folder", []string{"import", "-key", "imports/users/dry-run/"}, nil, 2, "names a folder"},
		{"import -object mismatch, flag after the argument", []string{"import", "s3://data/imports/users/a.csv", "-object", "activities"}, nil, 2,
			`-object activities, but the key "imports/users/a.csv" is under imports/users/`},
		{"import -dry-run on a real import", []string{"import", "-dry-run", "-key", "imports/users/a.csv"}, nil, 2, "the key decides a dry run"},
		{"import -chunk-records 0", []string{"import", "-chunk-records", "0", "-key", "imports/users/a.csv"}, nil, 2, `-chunk-records="0"`},
		{"import a bad IMPORT_CHUNK_RECORDS", []string{"import", "-key", "imports/users/a.csv"}, map[string]string{"IMPORT_CHUNK_RECORDS": "lots"}, 2, `IMPORT_CHUNK_RECORDS="lots"`},
		{"import without configuration", []string{"import", "-key", "imports/users/a.csv"}, nil, 1, "DATA_BUCKET is required"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			clearOpsEnv(t)
			for k, v := range tc.env {
				t.Setenv(k, v)
			}
			code, _, stderr := runCommand(t.Context(), t, tc.args...)
			if code != tc.wantCode {
				t.Errorf("cebulk %q: exit status %d, want %d\nstderr:\n%s", tc.args, code, tc.wantCode, stderr)
			}
			if !strings.Contains(stderr, tc.wantStderr) {
				t.Errorf("cebulk %q: stderr lacks %q:\n%s", tc.args, tc.wantStderr, stderr)
			}
		})
	}
}

// awayFromHourBoundary waits, when the next full hour is less than margin
// away, until it has passed: tests whose expectations are named from the
// wall clock then cannot straddle it. It waits at most margin, and only in
// those few seconds of each hour.
func awayFromHourBoundary(t *testing.T, margin time.Duration) {
	t.Helper()
	now := time.Now()
	next := now.Truncate(time.Hour).Add(time.Hour)
	if wait := next.Sub(now); wait < margin {
		t.Logf("waiting %v to pass the hour boundary", wait.Round(time.Millisecond))
		time.Sleep(wait + 100*time.Millisecond)
	}
}

// TestExportRunOverBudget: a backfill longer than the hour's query budget
// becomes a run that the command follows with plain progress lines (stdout
// is no terminal here); `cebulk runs` lists it and shows its estimate.
func TestExportRunOverBudget(t *testing.T) {
	awayFromHourBoundary(t, 30*time.Second)
	st := newOpsStack(t, cetest.Options{}, nil)
	t.Setenv("EXPORT_QUERIES_PER_HOUR", "2")
	today := time.Now().UTC().Truncate(24 * time.Hour)
	day := func(n int) string { return today.AddDate(0, 0, n).Format(time.DateOnly) }
	code, stdout, stderr := runCommand(t.Context(), t, "export", "-poll", "10ms", "-wait", "300ms", "-from", day(-3), "-to", day(0))
	if code != 1 {
		t.Fatalf("exit %d, want 1 (the wait runs out with days pending)\nstdout:\n%s\nstderr:\n%s", code, stdout, stderr)
	}
	for _, want := range []string{
		"deferred: 1 window over the query budget (2 an hour)",
		"days 2/3 done, 0 running, 1 pending, 0 failed; 48 records; ETA ",
	} {
		if !strings.Contains(stdout, want) {
			t.Errorf("stdout lacks %q:\n%s", want, stdout)
		}
	}
	if strings.Contains(stdout, "\r") {
		t.Errorf("progress redrawn in place on a non-terminal:\n%q", stdout)
	}
	if !strings.Contains(stderr, "RUNNING: the ExportFunction's sweeps go on with it") {
		t.Errorf("stderr = %s", stderr)
	}
	if got := st.fake.QueryCost(time.Time{}, time.Time{}); got != 2 {
		t.Errorf("%d queries, want the budget's 2", got)
	}
	code, list, stderr := runCommand(t.Context(), t, "runs")
	if code != 0 || !strings.Contains(list, "RUNNING: days 2/3 done") || !strings.Contains(list, "by cebulk export") {
		t.Fatalf("cebulk runs = %d\n%s\n%s", code, list, stderr)
	}
	id, _, _ := strings.Cut(list, " ")
	code, show, stderr := runCommand(t.Context(), t, "runs", id)
	var v exporter.RunView
	if code != 0 || json.Unmarshal([]byte(show), &v) != nil {
		t.Fatalf("cebulk runs %s = %d\n%s\n%s", id, code, show, stderr)
	}
	if v.Progress.Pending != 1 || v.Progress.Done != 2 || v.ETA == nil || v.QueriesPerHour != 2 {
		t.Errorf("run view = %+v", v)
	}
}
