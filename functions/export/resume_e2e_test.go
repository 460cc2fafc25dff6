package main

import (
	"bytes"
	"compress/gzip"
	"encoding/json"
	"io"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/cebulk/cebulk/internal/awstest"
	"github.com/cebulk/cebulk/internal/cetest"
	"github.com/cebulk/cebulk/internal/lambdatest"
	"github.com/cebulk/cebulk/internal/ledger"
)

// collectDay runs a backfill of day on x and invokes its collect, then
// waits for every continuation the function queued; it returns the
// decompressed part and the job.
func collectDay(t *testing.T, x *e2e, day string) ([]byte, *ledger.Job) {
	t.Helper()
	run := x.invoke(t, map[string]any{"action": "run", "objects": []string{"activities"}, "from": day, "to": x.today.AddDate(0, 0, -1).Format(time.DateOnly)})
	id := "export-activities-" + day
	if !slices.Equal(startedIDs(run.Run), []string{id}) {
		t.Fatalf("run started %v", startedIDs(run.Run))
	}
	x.invoke(t, map[string]string{"action": "collect", "jobId": id})
	if x.invokeAPI != nil {
		if err := x.invokeAPI.Wait(t.Context()); err != nil {
			t.Fatal(err)
		}
	}
	j := x.job(t, id)
	if j.Status != ledger.StatusDone {
		t.Fatalf("job %s: %s (%s), want DONE", id, j.Status, j.LastError)
	}
	raw, ok := x.read(t, "exports/activities/dt="+day+"/part-"+j.CEJobID+".jsonl.gz")
	if !ok {
		t.Fatalf("no part")
	}
	zr, err := gzip.NewReader(bytes.NewReader(raw))
	if err != nil {
		t.Fatal(err)
	}
	plain, err := io.ReadAll(zr)
	if err != nil {
		t.Fatal(err)
	}
	return plain, j
}

// TestE2ECollectAcrossInvocations collects a day whose download outlasts
// the function's 5-second timeout: the collect checkpoints after each
// S3 part, re-invokes itself at the deadline and resumes from its
// checkpoint (with a ranged download, or re-downloading and skipping when
// CE ignores ranges), until the partition is published, once, with
// exactly CE's records, byte for byte what an uninterrupted collect wrote.
func TestE2ECollectAcrossInvocations(t *testing.T) {
	for _, tc := range []struct {
		name   string
		ignore bool
	}{{"ranges", false}, {"no ranges", true}} {
		t.Run(tc.name, func(t *testing.T) {
			today := time.Now().UTC().Truncate(24 * time.Hour)
			dayT := today.AddDate(0, 0, -2)
			day := dayT.Format(time.DateOnly)
			// Generated once: the emulator then serves them at memory speed,
			// even in a -race build.
			var recs []json.RawMessage
			var lines []string
			cetest.BulkyActivities(7, 24<<20, dayT).Records(func(r cetest.Record) bool {
				recs = append(recs, bytes.Clone(r.JSON))
				lines = append(lines, string(r.JSON))
				return true
			})

			// The uninterrupted collect: a fast CE, a long timeout.
			ref := startE2E(t, nil)
			ref.fake.Seed("activities", recs)
			want, _ := collectDay(t, ref, day)

			// The interrupted one: CE serves new bytes at 3 MB/s, the
			// function times out after 5 seconds.
			x := startE2EFull(t, nil, lambdatest.StackOptions{}, cetest.Options{DownloadRate: 3e6, IgnoreRanges: tc.ignore}, 5*time.Second)
			x.fake.Seed("activities", recs)
			got, job := collectDay(t, x, day)

			continuations := 0
			for _, r := range x.invokeAPI.Records() {
				if strings.Contains(string(r.Payload), `"collect"`) {
					continuations++
					if r.Err != nil || r.Result.Error != nil {
						t.Errorf("continuation failed: %v %v", r.Err, r.Result.Error)
					}
				}
			}
			if continuations < 2 {
				t.Errorf("the collect took %d invocations, want at least 3", continuations+1)
			}
			if job.Attempts != 1 {
				t.Errorf("attempts = %d, want 1: continuations are not failures", job.Attempts)
			}
			if !bytes.Equal(got, want) {
				t.Errorf("the resumed collect's content (%d bytes) differs from the uninterrupted one's (%d bytes)", len(got), len(want))
			}
			x.checkPartition(t, "activities", "dt="+day, lines)

			published, resumed, ranged := 0, 0, 0
			for _, l := range x.logLines(t) {
				switch l["message"] {
				case "partition published":
					published++
				case "collect resumed from its checkpoint":
					resumed++
					if l["ranged"] == true {
						ranged++
					}
				}
			}
			if published != 1 || resumed < 2 {
				t.Errorf("published %d times, resumed %d times; want 1 and at least 2", published, resumed)
			}
			if wantRanged := resumed; tc.ignore && ranged != 0 || !tc.ignore && ranged != wantRanged {
				t.Errorf("%d of %d resumes ranged (CE ignores ranges: %v)", ranged, resumed, tc.ignore)
			}
			ups, err := awstest.S3(t).ListMultipartUploads(t.Context(), &s3.ListMultipartUploadsInput{Bucket: &x.bucket})
			if err != nil {
				t.Fatal(err)
			}
			if len(ups.Uploads) != 0 {
				t.Errorf("%d multipart uploads left behind", len(ups.Uploads))
			}
			t.Logf("%d invocations, %d resumes (%d ranged), %d bytes of JSON lines", continuations+1, resumed, ranged, len(got))
		})
	}
}
