package main

import (
	"bytes"
	"compress/gzip"
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// TestDemo runs the same story as `make demo` and checks what it left on
// disk: three day partitions and a users snapshot, each with a manifest and
// _SUCCESS, and the import report with its three rejected rows.
func TestDemo(t *testing.T) {
	if testing.Short() {
		t.Skip("the demo builds three bootstraps and runs them; skipped with -short")
	}
	for _, tc := range []struct {
		backend string
		wants   []string // in the output, besides the common lines
	}{
		{"ce", []string{"records the CE emulator accepted: 5", "callbacks delivered by the CE emulator"}},
		{"mixpanel", []string{"profile updates the Mixpanel emulator applied: 5", "Mixpanel emulator served 3 raw exports and 1 engage query pages"}},
	} {
		t.Run(tc.backend, func(t *testing.T) { testDemo(t, tc.backend, tc.wants) })
	}
}

func testDemo(t *testing.T, backend string, wants []string) {
	awayFromHourBoundary(t, time.Minute) // the demo's partitions are named from the clock
	out := t.TempDir()
	var stdout, stderr bytes.Buffer
	if err := run(t.Context(), []string{"demo", "-backend", backend, "-out", out, "-events", "500", "-users", "40", "-timeout", "4m"}, &stdout, &stderr); err != nil {
		t.Fatalf("cebulk demo: %v\nstdout:\n%s\nstderr:\n%s", err, stdout.String(), stderr.String())
	}
	text := stdout.String()
	for _, want := range append([]string{"partitions published:", "1540 records exported in 4 partitions", "demo finished"}, wants...) {
		if !strings.Contains(text, want) {
			t.Errorf("demo output lacks %q:\n%s", want, text)
		}
	}
	bucket := filepath.Join(out, "bucket")
	today := time.Now().UTC().Truncate(24 * time.Hour)
	for i := 1; i <= 3; i++ {
		dir := filepath.Join(bucket, "exports", "activities", "dt="+today.AddDate(0, 0, -i).Format(time.DateOnly))
		var m struct {
			Records int64  `json:"records"`
			Part    string `json:"part"`
			Backend string `json:"backend"`
		}
		readJSON(t, filepath.Join(dir, "_manifest.json"), &m)
		if m.Records != 500 || m.Backend != backend {
			t.Errorf("%s manifest records = %d, backend %q; want 500 from %s", dir, m.Records, m.Backend, backend)
		}
		if _, err := os.Stat(filepath.Join(dir, "_SUCCESS")); err != nil {
			t.Errorf("%s has no _SUCCESS", dir)
		}
		if n := gzipLines(t, filepath.Join(bucket, filepath.FromSlash(m.Part))); n != 500 {
			t.Errorf("%s holds %d lines, want 500", m.Part, n)
		}
	}
	snapshots, _ := filepath.Glob(filepath.Join(bucket, "exports", "users", "snapshot=*", "_SUCCESS"))
	if len(snapshots) != 1 {
		t.Errorf("users snapshots = %v, want one published", snapshots)
	}
	var summary struct {
		Status            string `json:"status"`
		Records, Rejected int
		Valid             int
	}
	readJSON(t, filepath.Join(bucket, "reports", "imports", "users", "demo-users.csv", "summary.json"), &summary)
	if summary.Status != "PARTIAL" || summary.Records != 8 || summary.Valid != 5 || summary.Rejected != 3 {
		t.Errorf("import summary = %+v, want PARTIAL with 8 records, 5 valid, 3 rejected", summary)
	}
	if n := gzipLines(t, filepath.Join(bucket, "reports", "imports", "users", "demo-users.csv", "rejects.jsonl.gz")); n != 3 {
		t.Errorf("rejects = %d lines, want 3", n)
	}
	checkLake(t, bucket)
	checkDemoMetrics(t, filepath.Join(out, "logs"))
	for _, want := range []string{"SELECT dt, count(*) AS events", "FROM " + demoDatabase + ".activities"} {
		if !strings.Contains(text, want) {
			t.Errorf("demo output lacks the Athena query %q", want)
		}
	}
	for _, name := range []string{"cebulk-export.log", "cebulk-import.log", "cebulk-webhook.log"} {
		logs, err := os.ReadFile(filepath.Join(out, "logs", name))
		if err != nil {
			t.Fatal(err)
		}
		if regexp.MustCompile(`token=[A-Za-z0-9_-]{20,}`).Match(logs) || bytes.Contains(logs, []byte(demoSigKey)) {
			t.Errorf("%s contains a callback token or the signature key", name)
		}
	}
}

func readJSON(t *testing.T, path string, v any) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("read %s: %v", path, err)
	}
	if err := json.Unmarshal(b, v); err != nil {
		t.Fatalf("decode %s: %v", path, err)
	}
}

func gzipLines(t *testing.T, path string) int {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatalf("open %s: %v", path, err)
	}
	defer f.Close()
	zr, err := gzip.NewReader(f)
	if err != nil {
		t.Fatalf("%s is not gzip: %v", path, err)
	}
	var buf bytes.Buffer
	if _, err := buf.ReadFrom(zr); err != nil {
		t.Fatalf("read %s: %v", path, err)
	}
	return bytes.Count(buf.Bytes(), []byte("\n"))
}
