package importer_test

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cebulk/cebulk/internal/cetest"
	"github.com/cebulk/cebulk/internal/importer"
	"github.com/cebulk/cebulk/internal/ledger"
	"github.com/google/go-cmp/cmp"
)

// sleeper records the waits and moves the clock (shared with the
// emulator) by them, so Retry-After periods pass.
type sleeper struct {
	mu    sync.Mutex
	clock *fakeClock
	waits []time.Duration
}

func (s *sleeper) Sleep(ctx context.Context, d time.Duration) error {
	s.mu.Lock()
	s.waits = append(s.waits, d)
	s.mu.Unlock()
	s.clock.Advance(d)
	return ctx.Err()
}

func (s *sleeper) recorded() []time.Duration {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]time.Duration(nil), s.waits...)
}

func sixActivities() []byte {
	var b strings.Builder
	for i := 1; i <= 6; i++ {
		b.WriteString(activity(fmt.Sprintf("good-%d", i), 1764028800+int64(i)) + "\n")
	}
	return []byte(b.String())
}

// TestUploadThrottled: CE's 429/503 on an upload is a refusal that created
// no job; the chunk is read again from its checkpoint and sent after the
// wait CE asked for, or Mixpanel's backoff, within the same invocation,
// which does not fail. No chunk is sent twice, no row is lost, and the
// refusals spend none of the chunk's attempts.
func TestUploadThrottled(t *testing.T) {
	tests := []struct {
		name     string
		throttle cetest.Throttle
		// waits are the bounds of each wait, in seconds.
		waits [][2]float64
	}{
		{"three 429 in a row, no Retry-After: 2s, 4s, 8s plus 1-5s jitter",
			cetest.Throttle{Suffix: "/bulk/activities", Calls: 3}, [][2]float64{{3, 7}, {5, 9}, {9, 13}}},
		{"429 with Retry-After", cetest.Throttle{Suffix: "/bulk/activities", Calls: 2, RetryAfter: "17"}, [][2]float64{{17, 17}, {17, 17}}},
		{"503 for 45 seconds", cetest.Throttle{Status: 503, Suffix: "/bulk/activities", For: 45 * time.Second}, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			sl := &sleeper{}
			e := setup(t, envOptions{cfg: importer.Config{ChunkRecords: 2, Sleep: sl.Sleep}})
			sl.clock = e.clock
			// The limit strikes from the second chunk on: it is installed
			// while CE reads the first.
			first := true
			e.fake.FailRecordsMatching(func(string, map[string]any) string {
				if first {
					first = false
					e.fake.Throttle(tc.throttle)
				}
				return ""
			})
			key := "imports/activities/throttled.jsonl"
			res := e.importFile(key, sixActivities())
			if res.Status != importer.StatusSucceeded {
				t.Errorf("status = %s, want %s", res.Status, importer.StatusSucceeded)
			}
			if diff := cmp.Diff(goodIDs(6), e.uploadedIDs("activities")); diff != "" {
				t.Errorf("uploaded (-want +got): rows lost or sent twice\n%s", diff)
			}
			if got := len(e.reinvocations()); got != 0 {
				t.Errorf("%d re-invocations, want 0: the limit was waited out in one invocation", got)
			}
			jobs := 0
			for _, j := range e.fake.Jobs() {
				if j.Direction == cetest.DirectionUpload {
					jobs++
				}
			}
			if jobs != 3 {
				t.Errorf("%d CE upload jobs, want 3: a chunk sent twice or lost", jobs)
			}
			if j := e.ledgerJob(importer.ChunkID(res.ImportID, 2)); j.Status != ledger.StatusDone || j.Attempts != 1 {
				t.Errorf("chunk 2 = %s after %d attempts (%s), want DONE after 1: a rate limit is no attempt", j.Status, j.Attempts, j.LastError)
			}
			waits := sl.recorded()
			if tc.waits != nil && len(waits) != len(tc.waits) {
				t.Fatalf("waits = %v, want %d", waits, len(tc.waits))
			}
			for i, w := range tc.waits {
				if s := waits[i].Seconds(); s < w[0] || s > w[1] {
					t.Errorf("wait %d = %v, want %v..%vs", i+1, waits[i], w[0], w[1])
				}
			}
			if tc.waits == nil {
				var total time.Duration
				for _, w := range waits {
					total += w
				}
				if total < 45*time.Second {
					t.Errorf("waited %v in all, want at least the 45s of the limit", total)
				}
			}
		})
	}
}

// TestThrottleOutlastsInvocation: a limit longer than the invocation has
// left releases the import for the sweep, without counting a failure or
// re-invoking at once (an outage answered 503 can last hours); the
// invocation succeeds, and the sweep's resume sends the chunk once the
// limit is over.
func TestThrottleOutlastsInvocation(t *testing.T) {
	sl := &sleeper{}
	e := setup(t, envOptions{cfg: importer.Config{ChunkRecords: 2, Sleep: sl.Sleep, SafetyMargin: time.Second}})
	sl.clock = e.clock
	e.fake.Throttle(cetest.Throttle{Suffix: "/bulk/activities", Calls: 1, RetryAfter: "3600"})
	key := "imports/activities/long-limit.jsonl"
	etag := e.upload(key, sixActivities())
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	res, err := e.imp.HandleObject(ctx, bucket, key, etag, 0)
	if err != nil {
		t.Fatalf("HandleObject: %v: a rate limit must not fail the invocation", err)
	}
	if res.Status != importer.StatusRetry {
		t.Fatalf("status = %s, want %s", res.Status, importer.StatusRetry)
	}
	if got := e.reinvocations(); len(got) != 0 {
		t.Errorf("re-invocations %v, want none: the sweep resumes a rate-limited import", got)
	}
	if got := sl.recorded(); len(got) != 0 {
		t.Errorf("waited %v in an invocation that cannot outlast the limit", got)
	}
	if j := e.ledgerJob(res.ImportID); j.Status != ledger.StatusPending {
		t.Errorf("import record %s, want PENDING", j.Status)
	}
	e.clock.Advance(time.Hour)
	if _, err := e.imp.Sweep(t.Context()); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{res.ImportID}, e.reinvocations()); diff != "" {
		t.Errorf("the sweep's re-invocations (-want +got):\n%s", diff)
	}
	res, err = e.imp.Resume(t.Context(), res.ImportID)
	if err != nil {
		t.Fatal(err)
	}
	if res.Status != importer.StatusSucceeded {
		t.Errorf("after the resume: status = %s, want SUCCEEDED", res.Status)
	}
	if diff := cmp.Diff(goodIDs(6), e.uploadedIDs("activities")); diff != "" {
		t.Errorf("uploaded (-want +got):\n%s", diff)
	}
}

func TestMixpanelBackoff(t *testing.T) {
	lo := func(int64) int64 { return 0 }
	hi := func(n int64) int64 { return n - 1 }
	for _, tc := range []struct {
		n      int
		lo, hi time.Duration
	}{
		{1, 3 * time.Second, 7 * time.Second},
		{2, 5 * time.Second, 9 * time.Second},
		{5, 33 * time.Second, 37 * time.Second},
		{6, 61 * time.Second, 65 * time.Second},
		{40, 61 * time.Second, 65 * time.Second},
	} {
		if got := importer.MixpanelBackoff(tc.n, lo); got != tc.lo {
			t.Errorf("MixpanelBackoff(%d, least jitter) = %v, want %v", tc.n, got, tc.lo)
		}
		if got := importer.MixpanelBackoff(tc.n, hi); got != tc.hi {
			t.Errorf("MixpanelBackoff(%d, most jitter) = %v, want %v", tc.n, got, tc.hi)
		}
	}
}
