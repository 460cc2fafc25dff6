package importer_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/cebulk/cebulk/internal/cetest"
	"github.com/cebulk/cebulk/internal/importer"
	"github.com/cebulk/cebulk/internal/ledger"
	"github.com/cebulk/cebulk/pkg/ce"
)

// slowReader hands out at most 100 bytes per Read, each after a pause: a
// slow link to CE.
type slowReader struct {
	r     io.Reader
	pause time.Duration
}

func (s slowReader) Read(p []byte) (int, error) {
	time.Sleep(s.pause)
	return s.r.Read(p[:min(len(p), 100)])
}

// TestDeadlineCheckpoint runs an import under a Lambda-like deadline, in
// a synctest bubble (virtual time, CE served in memory): the importer must
// stop before the deadline without leaving a half-sent chunk, and the
// resume must send every chunk exactly once.
func TestDeadlineCheckpoint(t *testing.T) {
	tests := []struct {
		name         string
		chunkRecords int
		pause        time.Duration
		wantChunks   int // committed by the first invocation
		wantAborted  int // uploads abandoned mid-body
	}{
		// One chunk takes ~1.6s, past the 0.8s the invocation may work:
		// it is abandoned before its body is complete.
		{"abandoned mid-chunk", 10, 100 * time.Millisecond, 0, 1},
		// One chunk takes ~0.25s: two fit, the third is not started.
		{"stops before a chunk it cannot finish", 3, 50 * time.Millisecond, 2, 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				store := newMemStore()
				fake := cetest.NewFake(cetest.Options{})
				defer fake.Close()
				c, err := ce.NewClient(cetest.InMemoryBaseURL, ce.Credentials{
					UserSecret: cetest.DefaultUserSecret, OrganizationSecret: cetest.DefaultOrgSecret, ElementToken: cetest.DefaultElementToken,
				}, ce.WithHTTPClient(&http.Client{Transport: fake.Transport()}), ce.WithRetry(0, time.Millisecond, time.Millisecond))
				if err != nil {
					t.Fatal(err)
				}
				api := ceWrapper{Client: c, upload: func(ctx context.Context, object string, r io.Reader, opts ce.UploadOptions) (*ce.Job, error) {
					return c.Upload(ctx, object, slowReader{r, tc.pause}, opts)
				}}
				var reinvoked []string
				imp := importer.New(importer.Config{
					Bucket: bucket, ChunkRecords: tc.chunkRecords, SafetyMargin: 200 * time.Millisecond,
				}, api, store, ledger.New(store, bucket), func(_ context.Context, id string) error {
					reinvoked = append(reinvoked, id)
					return nil
				}, nil)

				var b strings.Builder
				for i := 1; i <= 20; i++ {
					// synctest's clock starts in 2000: events from 1998.
					b.WriteString(activity(fmt.Sprintf("good-%d", i), 900000000+int64(i)) + "\n")
				}
				key := "imports/activities/deadline.jsonl"
				etag := store.put(bucket, key, []byte(b.String()))

				ctx, cancel := context.WithTimeout(t.Context(), time.Second)
				res, err := imp.HandleObject(ctx, bucket, key, etag, 0)
				cancel()
				if err != nil {
					t.Fatal(err)
				}
				if res.Status != importer.StatusCheckpointed || res.Chunks != tc.wantChunks {
					t.Fatalf("first invocation = %+v, want CHECKPOINTED after %d chunks", res, tc.wantChunks)
				}
				if len(reinvoked) != 1 {
					t.Fatalf("re-invocations = %v, want one", reinvoked)
				}
				if got := len(fake.Jobs()); got != tc.wantChunks {
					t.Errorf("CE jobs after the first invocation = %d, want %d (an abandoned upload made a job?)", got, tc.wantChunks)
				}

				res, err = imp.Resume(t.Context(), reinvoked[0])
				if err != nil {
					t.Fatal(err)
				}
				chunks := (20 + tc.chunkRecords - 1) / tc.chunkRecords
				if res.Status != importer.StatusSucceeded || res.Chunks != chunks {
					t.Errorf("after resume = %+v, want SUCCEEDED with %d chunks", res, chunks)
				}
				var ids []string
				for _, raw := range fake.Uploaded("activities") {
					ids = append(ids, idOf(t, raw))
				}
				if diff := cmp.Diff(goodIDs(20), ids); diff != "" {
					t.Errorf("uploaded (-want +got):\n%s", diff)
				}
				if got := fake.Requests("POST /bulk/activities"); got != chunks+tc.wantAborted {
					t.Errorf("upload requests = %d, want %d", got, chunks+tc.wantAborted)
				}
			})
		})
	}
}

// TestChunkTooSlowForAnInvocation: when one chunk cannot be uploaded
// within an invocation, the import does not re-invoke itself forever: it
// fails with a reason saying what to change.
func TestChunkTooSlowForAnInvocation(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		store := newMemStore()
		fake := cetest.NewFake(cetest.Options{})
		defer fake.Close()
		c, err := ce.NewClient(cetest.InMemoryBaseURL, ce.Credentials{
			UserSecret: cetest.DefaultUserSecret, OrganizationSecret: cetest.DefaultOrgSecret, ElementToken: cetest.DefaultElementToken,
		}, ce.WithHTTPClient(&http.Client{Transport: fake.Transport()}))
		if err != nil {
			t.Fatal(err)
		}
		api := ceWrapper{Client: c, upload: func(ctx context.Context, object string, r io.Reader, opts ce.UploadOptions) (*ce.Job, error) {
			return c.Upload(ctx, object, slowReader{r, time.Second}, opts)
		}}
		var reinvoked []string
		imp := importer.New(importer.Config{Bucket: bucket, ChunkRecords: 10, SafetyMargin: time.Second},
			api, store, ledger.New(store, bucket), func(_ context.Context, id string) error {
				reinvoked = append(reinvoked, id)
				return nil
			}, nil)
		var b strings.Builder
		for i := 1; i <= 10; i++ {
			b.WriteString(activity(fmt.Sprintf("good-%d", i), 900000000+int64(i)) + "\n")
		}
		key := "imports/activities/slow.jsonl"
		etag := store.put(bucket, key, []byte(b.String()))
		ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
		res, err := imp.HandleObject(ctx, bucket, key, etag, 0)
		cancel()
		for i := 0; err == nil && res.Status == importer.StatusCheckpointed && i < 10; i++ {
			ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
			res, err = imp.Resume(ctx, res.ImportID)
			cancel()
		}
		if err != nil {
			t.Fatal(err)
		}
		if res.Status != importer.StatusFailed || len(reinvoked) != importer.DefaultMaxAttempts-1 {
			t.Errorf("result = %+v after %d re-invocations, want FAILED after %d", res, len(reinvoked), importer.DefaultMaxAttempts-1)
		}
		b2, _ := store.get(bucket, "reports/"+key+"/summary.json")
		if !strings.Contains(string(b2), "IMPORT_CHUNK_RECORDS") {
			t.Errorf("summary does not say what to change:\n%s", b2)
		}
		if got := len(fake.Jobs()); got != 0 {
			t.Errorf("CE jobs = %d, want 0", got)
		}
	})
}
