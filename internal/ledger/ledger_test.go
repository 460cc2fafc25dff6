package ledger_test

import (
	"encoding/json"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/cebulk/cebulk/internal/awstest"
	"github.com/cebulk/cebulk/internal/ledger"
	"github.com/cebulk/cebulk/internal/s3stream"
)

func newLedger(t *testing.T) *ledger.Store {
	t.Helper()
	return ledger.New(s3stream.New(awstest.S3(t)), awstest.NewBucket(t))
}

func TestCreateGetUpdate(t *testing.T) {
	l := newLedger(t)
	ctx := t.Context()
	j := &ledger.Job{ID: "export-activities-2026-11-25", Kind: ledger.KindExport, Object: "activities", Status: ledger.StatusPending,
		Window: &ledger.Window{From: time.Date(2026, 11, 25, 0, 0, 0, 0, time.UTC), To: time.Date(2026, 11, 26, 0, 0, 0, 0, time.UTC), Partition: "dt=2026-11-25"}}
	etag, err := l.Create(ctx, j)
	if err != nil {
		t.Fatalf("Create: %v", err)
	}
	if _, err := l.Create(ctx, &ledger.Job{ID: j.ID}); !errors.Is(err, ledger.ErrExists) {
		t.Errorf("second Create = %v, want ErrExists", err)
	}
	got, gotTag, err := l.Get(ctx, j.ID)
	if err != nil {
		t.Fatalf("Get: %v", err)
	}
	if diff := cmp.Diff(j, got, cmpopts.EquateApproxTime(time.Millisecond)); diff != "" {
		t.Errorf("Get mismatch (-want +got):\n%s", diff)
	}
	if gotTag != etag {
		t.Errorf("Get etag = %s, want %s", gotTag, etag)
	}
	got.Status = ledger.StatusCollecting
	if _, err := l.Update(ctx, got, etag); err != nil {
		t.Fatalf("Update: %v", err)
	}
	got.Status = ledger.StatusDone
	if _, err := l.Update(ctx, got, etag); !errors.Is(err, ledger.ErrConflict) {
		t.Errorf("Update with stale etag = %v, want ErrConflict", err)
	}
	if _, _, err := l.Get(ctx, "nope"); !errors.Is(err, ledger.ErrNotFound) {
		t.Errorf("Get(unknown) = %v, want ErrNotFound", err)
	}
	if _, _, err := l.Get(ctx, "../etc"); err == nil {
		t.Errorf("Get(../etc) = nil error, want invalid id")
	}
}

// Two workers racing to take the same PENDING job: exactly one wins.
func TestOnlyOneTakerWins(t *testing.T) {
	l := newLedger(t)
	ctx := t.Context()
	if _, err := l.Create(ctx, &ledger.Job{ID: "race", Status: ledger.StatusPending}); err != nil {
		t.Fatal(err)
	}
	var wins atomic.Int32
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			j, etag, err := l.Get(ctx, "race")
			if err != nil || j.Status != ledger.StatusPending {
				return
			}
			j.Status = ledger.StatusCollecting
			if _, err := l.Update(ctx, j, etag); err == nil {
				wins.Add(1)
			} else if !errors.Is(err, ledger.ErrConflict) {
				t.Errorf("Update: %v", err)
			}
		})
	}
	wg.Wait()
	if got := wins.Load(); got != 1 {
		t.Errorf("%d workers took the job, want exactly 1", got)
	}
}

func TestModifyAndList(t *testing.T) {
	l := newLedger(t)
	ctx := t.Context()
	for _, id := range []string{"export-a-1", "export-a-2", "import-x"} {
		if _, err := l.Create(ctx, &ledger.Job{ID: id, Status: ledger.StatusPending}); err != nil {
			t.Fatal(err)
		}
	}
	var wg sync.WaitGroup
	for range 3 {
		wg.Go(func() {
			if _, err := l.Modify(ctx, "export-a-1", func(j *ledger.Job) error { j.Attempts++; return nil }); err != nil {
				t.Errorf("Modify: %v", err)
			}
		})
	}
	wg.Wait()
	j, _, _ := l.Get(ctx, "export-a-1")
	if j.Attempts != 3 {
		t.Errorf("after 3 concurrent Modify, Attempts = %d, want 3", j.Attempts)
	}
	var ids []string
	for j, err := range l.List(ctx, "export-") {
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, j.ID)
	}
	if diff := cmp.Diff([]string{"export-a-1", "export-a-2"}, ids); diff != "" {
		t.Errorf("List mismatch (-want +got):\n%s", diff)
	}
}

// An import's checkpoint survives writers that know nothing of it.
func TestImportCheckpointIsKept(t *testing.T) {
	l := newLedger(t)
	ctx := t.Context()
	cp := json.RawMessage(`{"chunks":2,"line":100001}`)
	if _, err := l.Create(ctx, &ledger.Job{ID: "import-abc", Kind: ledger.KindImport, Status: ledger.StatusUploading, Import: cp}); err != nil {
		t.Fatal(err)
	}
	if _, err := l.Modify(ctx, "import-abc", func(j *ledger.Job) error { j.LastError = "note"; return nil }); err != nil {
		t.Fatal(err)
	}
	j, _, err := l.Get(ctx, "import-abc")
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(string(cp), string(j.Import)); diff != "" {
		t.Errorf("checkpoint after an unrelated update (-want +got):\n%s", diff)
	}
}

func TestTokens(t *testing.T) {
	tok, hash := ledger.NewToken()
	tok2, _ := ledger.NewToken()
	j := &ledger.Job{TokenHash: hash}
	for _, tc := range []struct {
		name  string
		token string
		want  bool
	}{
		{"right", tok, true},
		{"other job's", tok2, false},
		{"empty", "", false},
		{"hash itself", hash, false},
	} {
		if got := j.CheckToken(tc.token); got != tc.want {
			t.Errorf("CheckToken(%s) = %v, want %v", tc.name, got, tc.want)
		}
	}
	if (&ledger.Job{}).CheckToken(tok) {
		t.Errorf("CheckToken on a job without a hash = true, want false")
	}
	if j.Public().TokenHash != "" {
		t.Errorf("Public() kept the token hash")
	}
}
