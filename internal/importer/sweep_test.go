package importer_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/cebulk/cebulk/internal/cetest"
	"github.com/cebulk/cebulk/internal/importer"
	"github.com/cebulk/cebulk/internal/ledger"
	"github.com/cebulk/cebulk/internal/s3stream"
)

const (
	openPrefix    = "state/imports/open/"
	sweepStateKey = "state/sweeps/imports.json"
)

// sweepRequests runs a sweep and returns what it did and the requests it
// made.
func (e *env) sweepRequests() (importer.SweepResult, []storeCall) {
	e.t.Helper()
	n := len(e.store.requests(0))
	e.store.mu.Lock()
	listed := e.store.listed
	e.store.mu.Unlock()
	res, err := e.imp.Sweep(e.t.Context())
	if err != nil {
		e.t.Fatalf("Sweep: %v", err)
	}
	calls := e.store.requests(n)
	ops := map[string]int{}
	for _, c := range calls {
		ops[c.Op]++
	}
	e.store.mu.Lock()
	listed = e.store.listed - listed
	e.store.mu.Unlock()
	e.t.Logf("sweep: %+v; requests %v, keys listed %d", res, ops, listed)
	return res, calls
}

// markers returns the import ids that have a marker.
func (e *env) markers() []string {
	var ids []string
	for _, k := range e.store.keys(bucket, openPrefix) {
		ids = append(ids, strings.TrimPrefix(k, openPrefix))
	}
	return ids
}

// count returns how many calls are op, and the keys of those that are.
func count(calls []storeCall, op string) (int, []string) {
	var keys []string
	for _, c := range calls {
		if c.Op == op {
			keys = append(keys, c.Key)
		}
	}
	return len(keys), keys
}

// importOf returns the import id a ledger key belongs to ("" for other
// keys).
func importOf(key string) string {
	id, ok := strings.CutPrefix(key, ledger.Prefix)
	if !ok {
		return ""
	}
	id = strings.TrimSuffix(id, ".json")
	if i := strings.Index(id, "-chunk-"); i >= 0 {
		id = id[:i]
	}
	return id
}

// TestSweepReadsOnlyOpenImports: with 50 finished imports and 2 open ones,
// a sweep lists the markers and reads the 2 open imports' records (and
// what handling them needs), never a finished one; once an hour it lists
// every import record.
func TestSweepReadsOnlyOpenImports(t *testing.T) {
	e := setup(t, envOptions{cfg: importer.Config{ChunkRecords: 2}, ce: cetest.Options{CompletionDelay: time.Hour}})
	three := []byte(activity("good-1", 1764028801) + "\n" + activity("good-2", 1764028802) + "\n" + activity("good-3", 1764028803) + "\n")
	var finished []string
	for i := range 50 {
		res := e.importFile(fmt.Sprintf("imports/activities/done-%02d.jsonl", i), three)
		e.clock.Advance(2 * time.Hour)
		if r, err := e.imp.Finalize(t.Context(), res.ImportID); err != nil || r.Status != importer.StatusSucceeded {
			t.Fatalf("Finalize(%s) = %+v, %v; want SUCCEEDED", res.ImportID, r, err)
		}
		finished = append(finished, res.ImportID)
	}
	if got := e.markers(); len(got) != 0 {
		t.Fatalf("markers of finished imports left: %v", got)
	}
	waiting := e.importFile("imports/activities/open-1.jsonl", []byte(activity("good-1", 1764028801)+"\n"))
	data, _ := jsonlFile(6)
	checkpointed := e.importFile("imports/activities/open-2.jsonl", data, importer.MaxChunks(1))
	if waiting.Status != importer.StatusWaiting || checkpointed.Status != importer.StatusCheckpointed {
		t.Fatalf("setup: %+v, %+v", waiting, checkpointed)
	}
	open := []string{waiting.ImportID, checkpointed.ImportID}
	slices.Sort(open)
	if diff := cmp.Diff(open, e.markers()); diff != "" {
		t.Fatalf("markers (-want +got):\n%s", diff)
	}

	// The first sweep after the deploy finds no sweep state: it also lists
	// every record, and reads the finished ones.
	res, calls := e.sweepRequests()
	if diff := cmp.Diff(importer.SweepResult{Checked: 2, Waiting: 1}, res); diff != "" {
		t.Errorf("first sweep (-want +got):\n%s", diff)
	}
	if gets, _ := count(calls, "GET"); gets < 50 {
		t.Errorf("the full listing made %d GETs, want at least one per finished import (50)", gets)
	}

	// The next sweeps, within the hour, read O(open).
	for i := range 2 {
		e.clock.Advance(5 * time.Minute)
		res, calls := e.sweepRequests()
		if diff := cmp.Diff(importer.SweepResult{Checked: 2, Waiting: 1}, res); diff != "" {
			t.Errorf("sweep %d (-want +got):\n%s", i+2, diff)
		}
		_, lists := count(calls, "LIST")
		if diff := cmp.Diff([]string{openPrefix}, lists); diff != "" {
			t.Errorf("sweep %d lists (-want +got):\n%s", i+2, diff)
		}
		gets, keys := count(calls, "GET")
		for _, k := range keys {
			if k != sweepStateKey && !slices.Contains(open, importOf(k)) {
				t.Errorf("sweep %d read %s, which is neither an open import's nor the sweep's state", i+2, k)
			}
		}
		// The two records, the waiting import's record again and its chunk
		// (finalize), and the sweep's state.
		if gets != 5 {
			t.Errorf("sweep %d made %d GETs %v, want 5", i+2, gets, keys)
		}
		if n, keys := count(calls, "PUT"); n != 0 {
			t.Errorf("sweep %d wrote %v", i+2, keys)
		}
	}

	// An hour after the last full listing started, the next one runs.
	e.clock.Advance(importer.DefaultFullListingEvery)
	_, calls = e.sweepRequests()
	_, listed := count(calls, "LIST")
	if diff := cmp.Diff([]string{openPrefix, ledger.Prefix + "import-"}, listed); diff != "" {
		t.Errorf("sweep an hour later lists (-want +got):\n%s", diff)
	}
	_, keys := count(calls, "GET")
	for _, id := range finished {
		if !slices.Contains(keys, ledger.Key(id)) {
			t.Errorf("the full listing did not read finished import %s", id)
		}
	}
	for _, id := range open {
		if n := strings.Count(strings.Join(keys, "\n"), ledger.Key(id)); n > 2 {
			t.Errorf("open import %s read %d times: the full listing handled it again", id, n)
		}
	}
}

// TestSweepWithoutFullListing: a negative FullListingEvery means markers
// only, even on the first sweep.
func TestSweepWithoutFullListing(t *testing.T) {
	e := setup(t, envOptions{cfg: importer.Config{FullListingEvery: -1}})
	e.importFile("imports/users/dry-run/a.csv", []byte("distinct_id,name\nu1,Ann\n"))
	res, calls := e.sweepRequests()
	if diff := cmp.Diff(importer.SweepResult{}, res); diff != "" {
		t.Errorf("sweep (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]storeCall{{Op: "LIST", Key: openPrefix}}, calls); diff != "" {
		t.Errorf("requests (-want +got):\n%s", diff)
	}
}

// TestCrashBetweenMarkerAndRecord: HandleObject makes the marker, then
// fails to create the import record. The sweep leaves the young marker
// alone; the event's retry creates the import, which the sweep then
// handles; without a retry the marker is removed after the lease.
func TestCrashBetweenMarkerAndRecord(t *testing.T) {
	crash := func(e *env, id string) {
		e.t.Helper()
		e.store.failWrite = func(k string, cond s3stream.Condition) error {
			if k == ledger.Key(id) && cond.IfNoneMatch {
				return errInjected
			}
			return nil
		}
	}
	key := "imports/activities/crash.jsonl"
	data, _ := jsonlFile(6)

	t.Run("retried", func(t *testing.T) {
		e := setup(t, envOptions{cfg: importer.Config{ChunkRecords: 2}})
		etag := e.upload(key, data)
		id := importer.ImportID(bucket, key, etag)
		crash(e, id)
		if _, err := e.imp.HandleObject(t.Context(), bucket, key, etag, 0); err == nil {
			t.Fatal("HandleObject succeeded through the injected failure")
		}
		e.store.failWrite = nil
		if diff := cmp.Diff([]string{id}, e.markers()); diff != "" {
			t.Fatalf("markers after the crash (-want +got):\n%s", diff)
		}
		if res, _ := e.sweepRequests(); res != (importer.SweepResult{}) {
			t.Errorf("sweep during the crash window = %+v, want nothing done", res)
		}
		if diff := cmp.Diff([]string{id}, e.markers()); diff != "" {
			t.Errorf("a young marker was removed (-want +got):\n%s", diff)
		}
		// Lambda retries the event: the import runs; it stops after a chunk
		// and its resume invocation is lost.
		e.clock.Advance(time.Minute)
		res, err := e.imp.HandleObject(t.Context(), bucket, key, etag, 0, importer.MaxChunks(1))
		if err != nil || res.Status != importer.StatusCheckpointed {
			t.Fatalf("retried HandleObject = %+v, %v; want CHECKPOINTED", res, err)
		}
		e.clock.Advance(importer.DefaultLease)
		sw, _ := e.sweepRequests()
		if diff := cmp.Diff(importer.SweepResult{Checked: 1, Resumed: 1}, sw); diff != "" {
			t.Errorf("sweep (-want +got):\n%s", diff)
		}
		final, err := e.imp.Resume(t.Context(), id)
		if err != nil || final.Status != importer.StatusPartial {
			t.Fatalf("Resume = %+v, %v; want PARTIAL", final, err)
		}
		if diff := cmp.Diff(goodIDs(6), e.uploadedIDs("activities")); diff != "" {
			t.Errorf("uploaded (-want +got):\n%s", diff)
		}
		if got := e.markers(); len(got) != 0 {
			t.Errorf("markers of a final import: %v", got)
		}
	})

	t.Run("never retried", func(t *testing.T) {
		e := setup(t, envOptions{})
		etag := e.upload(key, data)
		id := importer.ImportID(bucket, key, etag)
		crash(e, id)
		if _, err := e.imp.HandleObject(t.Context(), bucket, key, etag, 0); err == nil {
			t.Fatal("HandleObject succeeded through the injected failure")
		}
		e.store.failWrite = nil
		e.clock.Advance(importer.DefaultLease)
		res, _ := e.sweepRequests()
		if diff := cmp.Diff(importer.SweepResult{Unmarked: 1}, res); diff != "" {
			t.Errorf("sweep (-want +got):\n%s", diff)
		}
		if got := e.markers(); len(got) != 0 {
			t.Errorf("markers left: %v", got)
		}
	})

	// A late retry of the event races the sweep that removes the old
	// marker: whichever order the requests take, the open import keeps a
	// marker.
	t.Run("retry creates the record while the sweep reads the marker", func(t *testing.T) {
		e := setup(t, envOptions{cfg: importer.Config{ChunkRecords: 2}})
		etag := e.upload(key, data)
		id := importer.ImportID(bucket, key, etag)
		crash(e, id)
		if _, err := e.imp.HandleObject(t.Context(), bucket, key, etag, 0); err == nil {
			t.Fatal("HandleObject succeeded through the injected failure")
		}
		e.store.failWrite = nil
		e.clock.Advance(importer.DefaultLease)
		// The sweep found no record; while it reads the marker, the retry
		// runs (its marker write finds the old marker) and checkpoints.
		e.store.onRead = func(k string) {
			if k != openPrefix+id {
				return
			}
			e.store.onRead = nil
			if res, err := e.imp.HandleObject(t.Context(), bucket, key, etag, 0, importer.MaxChunks(1)); err != nil || res.Status != importer.StatusCheckpointed {
				t.Errorf("retried HandleObject = %+v, %v; want CHECKPOINTED", res, err)
			}
		}
		res, _ := e.sweepRequests()
		if diff := cmp.Diff(importer.SweepResult{Checked: 1}, res); diff != "" {
			t.Errorf("sweep (-want +got):\n%s", diff)
		}
		if diff := cmp.Diff([]string{id}, e.markers()); diff != "" {
			t.Errorf("markers of the open import (-want +got):\n%s", diff)
		}
	})

	t.Run("retry creates the record after the sweep removed the marker", func(t *testing.T) {
		e := setup(t, envOptions{cfg: importer.Config{ChunkRecords: 2}})
		etag := e.upload(key, data)
		id := importer.ImportID(bucket, key, etag)
		crash(e, id)
		if _, err := e.imp.HandleObject(t.Context(), bucket, key, etag, 0); err == nil {
			t.Fatal("HandleObject succeeded through the injected failure")
		}
		e.clock.Advance(importer.DefaultLease)
		// The retry writes its marker (finding the old one), then stalls
		// before creating the record, while a sweep removes the marker.
		proceed, stalled := make(chan struct{}), make(chan struct{})
		e.store.failWrite = func(k string, cond s3stream.Condition) error {
			if k == ledger.Key(id) && cond.IfNoneMatch {
				close(stalled)
				<-proceed
			}
			return nil
		}
		done := make(chan importer.Result)
		go func() {
			res, err := e.imp.HandleObject(context.Background(), bucket, key, etag, 0, importer.MaxChunks(1))
			if err != nil {
				t.Errorf("retried HandleObject: %v", err)
			}
			done <- res
		}()
		<-stalled
		res, _ := e.sweepRequests()
		if diff := cmp.Diff(importer.SweepResult{Unmarked: 1}, res); diff != "" {
			t.Errorf("sweep (-want +got):\n%s", diff)
		}
		close(proceed)
		if r := <-done; r.Status != importer.StatusCheckpointed {
			t.Errorf("retried HandleObject = %+v, want CHECKPOINTED", r)
		}
		e.store.failWrite = nil
		if diff := cmp.Diff([]string{id}, e.markers()); diff != "" {
			t.Errorf("markers of the open import (-want +got):\n%s", diff)
		}
	})
}

// TestCrashBetweenFinalWriteAndMarkerDelete: the report is written and the
// record final, but the marker's delete fails; the next sweep removes it
// without handling the import again.
func TestCrashBetweenFinalWriteAndMarkerDelete(t *testing.T) {
	e := setup(t, envOptions{})
	e.store.failDelete = func(k string) error {
		if strings.HasPrefix(k, openPrefix) {
			return errInjected
		}
		return nil
	}
	key := "imports/users/final.csv"
	res := e.importFile(key, []byte("distinct_id,name\nu1,Ann\nu2,Bob\n"))
	if res.Status != importer.StatusSucceeded {
		t.Fatalf("import = %+v, want SUCCEEDED", res)
	}
	e.store.failDelete = nil
	if diff := cmp.Diff([]string{res.ImportID}, e.markers()); diff != "" {
		t.Fatalf("markers after the failed delete (-want +got):\n%s", diff)
	}
	summary, _ := e.store.get(bucket, "reports/"+key+"/summary.json")
	statusCalls := e.fake.Requests("/status")

	sw, _ := e.sweepRequests()
	if diff := cmp.Diff(importer.SweepResult{Unmarked: 1}, sw); diff != "" {
		t.Errorf("sweep (-want +got):\n%s", diff)
	}
	if got := e.markers(); len(got) != 0 {
		t.Errorf("markers left: %v", got)
	}
	if again, _ := e.store.get(bucket, "reports/"+key+"/summary.json"); string(again) != string(summary) {
		t.Errorf("summary rewritten by the sweep")
	}
	if got := e.fake.Requests("/status"); got != statusCalls {
		t.Errorf("the sweep read CE statuses of a final import")
	}
}

// TestDuplicateEventOfFinalImportLeavesNoMarker: a repeated S3 event makes
// the marker before it finds the import final, and removes it again.
func TestDuplicateEventOfFinalImportLeavesNoMarker(t *testing.T) {
	e := setup(t, envOptions{})
	key := "imports/users/dup.csv"
	data := []byte("distinct_id,name\nu1,Ann\n")
	first := e.importFile(key, data)
	second := e.importFile(key, data)
	if second.Status != importer.StatusDuplicate || second.ImportID != first.ImportID {
		t.Fatalf("second event = %+v, want DUPLICATE of %s", second, first.ImportID)
	}
	if got := e.markers(); len(got) != 0 {
		t.Errorf("markers left: %v", got)
	}
}

// bareEnv is an Importer on an in-memory S3 without CE (dry runs only),
// for tests inside a synctest bubble, where setup's CE emulator (a real
// HTTP server) cannot run.
type bareEnv struct {
	t         *testing.T
	store     *memStore
	clock     *fakeClock
	imp       *importer.Importer
	reinvoked []string
}

func newBareEnv(t *testing.T) *bareEnv {
	e := &bareEnv{t: t, store: newMemStore(), clock: &fakeClock{now: t0}}
	e.imp = importer.New(importer.Config{Bucket: bucket, ChunkRecords: 1, Now: e.clock.Now}, nil, e.store, ledger.New(e.store, bucket),
		func(_ context.Context, id string) error {
			e.reinvoked = append(e.reinvoked, id)
			return nil
		}, nil)
	return e
}

// dryRun imports a CSV of users as a dry run under imports/users/dry-run/
// name.
func (e *bareEnv) dryRun(name, csv string, opts ...importer.RunOption) importer.Result {
	e.t.Helper()
	key := "imports/users/dry-run/" + name
	etag := strings.Trim(e.store.put(bucket, key, []byte(csv)), `"`)
	res, err := e.imp.HandleObject(e.t.Context(), bucket, key, etag, 0, opts...)
	if err != nil {
		e.t.Fatalf("HandleObject(%s): %v", key, err)
	}
	return res
}

// sweep runs a sweep with d left before its deadline, and returns what it
// did and the import records it read.
func (e *bareEnv) sweep(d time.Duration) (importer.SweepResult, []string) {
	e.t.Helper()
	n := len(e.store.requests(0))
	ctx, cancel := context.WithTimeout(e.t.Context(), d)
	defer cancel()
	res, err := e.imp.Sweep(ctx)
	if err != nil {
		e.t.Fatalf("Sweep: %v", err)
	}
	return res, e.recordsRead(n)
}

// recordsRead returns the ledger keys read since request n.
func (e *bareEnv) recordsRead(n int) []string {
	var keys []string
	for _, c := range e.store.requests(n) {
		if c.Op == "GET" && strings.HasPrefix(c.Key, ledger.Prefix) {
			keys = append(keys, c.Key)
		}
	}
	return keys
}

// slowRecords makes every read of a ledger record take a minute (of the
// bubble's time), so that a sweep with 10 minutes left stops at its
// 2-minute margin after 8 or 9 of them.
func (e *bareEnv) slowRecords(hook func(key string)) {
	e.store.onRead = func(k string) {
		if strings.HasPrefix(k, ledger.Prefix) {
			time.Sleep(time.Minute)
			if hook != nil {
				hook(k)
			}
		}
	}
}

func (e *bareEnv) listingFinished() bool {
	b, ok := e.store.get(bucket, sweepStateKey)
	return ok && strings.Contains(string(b), `"finished"`)
}

// TestFullListingAdoptsImportsWithoutMarker: an open import started by the
// previous version (no marker) is found by the full listing, marked, and
// handled by later sweeps through its marker. The listing stops at the
// invocation's deadline and the next sweep goes on where it stopped.
func TestFullListingAdoptsImportsWithoutMarker(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		e := newBareEnv(t)
		var done []string
		for i := range 20 {
			done = append(done, ledger.Key(e.dryRun(fmt.Sprintf("done-%02d.csv", i), "distinct_id,name\nu1,Ann\n").ImportID))
		}
		legacy := e.dryRun("legacy.csv", "distinct_id,name\nu1,Ann\nu2,Bob\n", importer.MaxChunks(1))
		if legacy.Status != importer.StatusCheckpointed {
			t.Fatalf("legacy import = %+v, want CHECKPOINTED", legacy)
		}
		if err := e.store.Delete(t.Context(), bucket, openPrefix+legacy.ImportID); err != nil { // as the previous version left it
			t.Fatal(err)
		}
		e.clock.Advance(importer.DefaultLease) // its resume invocation was lost
		e.reinvoked = nil

		e.slowRecords(nil)
		read := map[string]int{}
		var total importer.SweepResult
		for i := 0; !e.listingFinished(); i++ {
			if i == 5 {
				t.Fatal("the full listing did not finish in 5 sweeps")
			}
			res, keys := e.sweep(10 * time.Minute)
			if i == 0 && e.listingFinished() {
				t.Fatal("the first sweep finished the listing: the test does not reach the deadline")
			}
			total.Checked += res.Checked
			total.Resumed += res.Resumed
			total.Adopted += res.Adopted
			for _, k := range keys {
				read[k]++
			}
		}
		for _, k := range done {
			if read[k] != 1 {
				t.Errorf("%s read %d times by the full listing, want 1", k, read[k])
			}
		}
		if diff := cmp.Diff(importer.SweepResult{Checked: 1, Resumed: 1, Adopted: 1}, total); diff != "" {
			t.Errorf("sweeps in all (-want +got):\n%s", diff)
		}
		if diff := cmp.Diff([]string{legacy.ImportID}, e.reinvoked); diff != "" {
			t.Errorf("re-invocations (-want +got):\n%s", diff)
		}
		if _, ok := e.store.get(bucket, openPrefix+legacy.ImportID); !ok {
			t.Errorf("the adopted import has no marker")
		}

		// From now on the marker names it: the next sweep (within the
		// hour) reads only its record.
		e.store.onRead = nil
		e.clock.Advance(importer.DefaultLease)
		n := len(e.store.requests(0))
		res, err := e.imp.Sweep(t.Context())
		if err != nil || res.Resumed != 1 {
			t.Errorf("sweep = %+v, %v; want the adopted import resumed", res, err)
		}
		var reads []string
		for _, c := range e.store.requests(n) {
			if c.Op == "GET" || c.Op == "LIST" {
				reads = append(reads, c.Op+" "+c.Key)
			}
		}
		want := []string{"LIST " + openPrefix, "GET " + ledger.Key(legacy.ImportID), "GET " + sweepStateKey}
		if diff := cmp.Diff(want, reads); diff != "" {
			t.Errorf("reads (-want +got):\n%s", diff)
		}
	})
}

// errCrash stands for an invocation killed mid-listing.
var errCrash = errors.New("invocation killed")

// TestFullListingIsHeldByOneSweep: while a sweep does the full listing,
// other sweeps leave it alone; when that sweep dies, the first sweep after
// the lease takes the listing over where its last save left it.
func TestFullListingIsHeldByOneSweep(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		e := newBareEnv(t)
		var records []string
		for i := range 10 {
			records = append(records, ledger.Key(e.dryRun(fmt.Sprintf("done-%02d.csv", i), "distinct_id,name\nu1,Ann\n").ImportID))
		}
		slices.Sort(records)

		// The first sweep starts the listing; while it reads its third
		// record, another sweep runs, and it dies reading the sixth.
		var other []string
		n := 0
		e.slowRecords(func(k string) {
			n++
			switch n {
			case 3:
				m := len(e.store.requests(0))
				if _, err := e.imp.Sweep(t.Context()); err != nil {
					t.Errorf("concurrent sweep: %v", err)
				}
				other = e.recordsRead(m)
			case 6:
				panic(errCrash)
			}
		})
		m := len(e.store.requests(0))
		func() {
			defer func() {
				if r := recover(); r != errCrash {
					panic(r)
				}
			}()
			_, _ = e.imp.Sweep(t.Context())
			t.Fatal("the sweep did not die")
		}()
		first := e.recordsRead(m)
		if len(other) != 0 {
			t.Errorf("a sweep read %v while another one held the listing", other)
		}
		if diff := cmp.Diff(records[:6], first); diff != "" {
			t.Fatalf("records read by the sweep that died (-want +got):\n%s", diff)
		}

		// Within the lease the listing is still held by the dead sweep.
		e.store.onRead = nil
		e.clock.Advance(importer.DefaultLease - time.Minute)
		if _, keys := e.sweep(10 * time.Minute); len(keys) != 0 {
			t.Errorf("a sweep within the lease read %v", keys)
		}
		e.clock.Advance(time.Minute)
		if _, keys := e.sweep(10 * time.Minute); !cmp.Equal(records[5:], keys) {
			// The sixth record was read when the sweep died, after its
			// last save: it is read again.
			t.Errorf("the sweep taking over read %v, want %v", keys, records[5:])
		}
		if !e.listingFinished() {
			t.Errorf("the listing did not finish")
		}
	})
}
