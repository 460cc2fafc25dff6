package importer_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"iter"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/cebulk/cebulk/internal/cetest"
	"github.com/cebulk/cebulk/internal/importer"
	"github.com/cebulk/cebulk/internal/ledger"
	"github.com/cebulk/cebulk/internal/s3stream"
	"github.com/cebulk/cebulk/pkg/ce"
)

// ceError is one line of ce-errors.jsonl.
type ceError struct {
	Chunk   int             `json:"chunk"`
	JobID   string          `json:"jobId"`
	CEJobID string          `json:"ceJobId"`
	Line    *int            `json:"line"`
	Index   *int64          `json:"index"`
	Error   json.RawMessage `json:"error"`
}

func (e *env) ceErrorsOf(key string) []ceError {
	e.t.Helper()
	b, ok := e.store.get(bucket, "reports/"+key+"/ce-errors.jsonl")
	if !ok {
		e.t.Fatalf("no ce-errors.jsonl for %s", key)
	}
	var out []ceError
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		var c ceError
		if err := json.Unmarshal(sc.Bytes(), &c); err != nil {
			e.t.Fatalf("ce-errors line %q: %v", sc.Text(), err)
		}
		if c.CEJobID == "" || c.JobID == "" || len(c.Error) == 0 {
			e.t.Errorf("ce-errors line %s lacks its job ids or CE's error", sc.Text())
		}
		out = append(out, c)
	}
	return out
}

// located is where a CE error points: its chunk, the record's position in
// the chunk's upload, and the record's source line (0: none).
type located struct {
	Chunk int
	Index int64 // -1: none
	Line  int
}

func locate(errs []ceError) []located {
	var out []located
	for _, c := range errs {
		l := located{Chunk: c.Chunk, Index: -1}
		if c.Index != nil {
			l.Index = *c.Index
		}
		if c.Line != nil {
			l.Line = *c.Line
		}
		out = append(out, l)
	}
	return out
}

// failIDs makes CE fail the events whose distinct_id is in ids.
func (e *env) failIDs(ids ...string) {
	e.fake.FailRecordsMatching(func(object string, rec map[string]any) string {
		props, _ := rec["properties"].(map[string]any)
		id, _ := props["distinct_id"].(string)
		if id == "" {
			id, _ = rec["$distinct_id"].(string)
		}
		if slices.Contains(ids, id) {
			return "74234: refused for " + id
		}
		return ""
	})
}

// lineOf returns the 1-based line of the first occurrence of marker in
// text, found independently of recordio: each test file's records start
// on the line that holds their distinct id.
func lineOf(t *testing.T, text, marker string) int {
	t.Helper()
	i := strings.Index(text, marker)
	if i < 0 {
		t.Fatalf("%q not in the file", marker)
	}
	return 1 + strings.Count(text[:i], "\n")
}

// TestCEErrorsCarrySourceLines: the records CE fails are reported in
// ce-errors.jsonl with the source line each starts on, for every format
// (CSV rows spanning lines, blank rows, rejected rows between records),
// across chunks, gzipped or not, and when every chunk is committed by its
// own invocation.
func TestCEErrorsCarrySourceLines(t *testing.T) {
	failing := []int{2, 3, 7} // chunks of 2: chunk 1 index 1, chunk 2 index 0, chunk 4 index 0
	for _, f := range resumeFiles() {
		for _, gzipped := range []bool{false, true} {
			for _, every := range []int{0, 1} {
				name, key, data := f.name, f.key, []byte(f.data)
				if gzipped {
					name, key, data = name+" gzip", key+".gz", gz(t, data)
				}
				if every > 0 {
					name += " checkpoint per chunk"
				}
				t.Run(name, func(t *testing.T) {
					var ids []string
					var want []located
					for _, i := range failing {
						id := fmt.Sprintf("good-%d", i)
						marker := `"distinct_id":"` + id + `"`
						if strings.HasSuffix(f.key, ".csv") {
							marker = "," + id + ","
						}
						if !strings.Contains(f.data, marker) {
							continue // the short file
						}
						ids = append(ids, id)
						// All good-n are valid and in order: good-i is
						// record i of the upload.
						want = append(want, located{Chunk: (i + 1) / 2, Index: int64((i - 1) % 2), Line: lineOf(t, f.data, marker)})
					}
					e := setup(t, envOptions{cfg: importer.Config{ChunkRecords: 2}})
					e.failIDs(ids...)
					res := e.runToEnd(key, data, every)
					if res.Status != importer.StatusPartial {
						t.Errorf("status = %s, want PARTIAL", res.Status)
					}
					if every > 0 && res.Chunks < 2 {
						t.Fatalf("%d chunks: the test resumes too little", res.Chunks)
					}
					if diff := cmp.Diff(want, locate(e.ceErrorsOf(key))); diff != "" {
						t.Errorf("CE errors (-want +got):\n%s", diff)
					}
					s := e.summaryOf(key)
					n := float64(len(want))
					if s["ceFailed"] != n || s["ceErrors"] != n || s["ceErrorsWithLine"] != n {
						t.Errorf("summary ceFailed %v, ceErrors %v, ceErrorsWithLine %v; want %v each", s["ceFailed"], s["ceErrors"], s["ceErrorsWithLine"], n)
					}
					if keys := e.store.keys(bucket, "state/imports/"); len(keys) != 0 {
						t.Errorf("state parts left: %v", keys)
					}
				})
			}
		}
	}
}

// runToEnd imports data under key; with every > 0 each invocation
// checkpoints after that many chunks and the import is resumed until it
// ends.
func (e *env) runToEnd(key string, data []byte, every int) importer.Result {
	e.t.Helper()
	var opts []importer.RunOption
	if every > 0 {
		opts = append(opts, importer.MaxChunks(every))
	}
	res := e.importFile(key, data, opts...)
	for i := 0; res.Status == importer.StatusCheckpointed; i++ {
		if i > 100 {
			e.t.Fatal("the import never ends")
		}
		if every > 0 {
			// The chunks committed so far have their line index.
			for n := 1; n <= res.Chunks; n++ {
				k := fmt.Sprintf("state/imports/%s/chunk-%04d.lines.gz", res.ImportID, n)
				if _, ok := e.store.get(bucket, k); !ok {
					e.t.Fatalf("checkpoint after chunk %d without %s", res.Chunks, k)
				}
			}
		}
		var err error
		if res, err = e.imp.Resume(e.t.Context(), res.ImportID, opts...); err != nil {
			e.t.Fatalf("Resume: %v", err)
		}
	}
	return res
}

// errorsWrapper rewrites what CE's errors endpoint returns.
type errorsWrapper struct {
	*ce.Client
	rewrite func([]json.RawMessage) []json.RawMessage
}

func (w errorsWrapper) Errors(ctx context.Context, jobID string, pageSize int) iter.Seq2[json.RawMessage, error] {
	return func(yield func(json.RawMessage, error) bool) {
		var all []json.RawMessage
		for raw, err := range w.Client.Errors(ctx, jobID, pageSize) {
			if err != nil {
				yield(nil, err)
				return
			}
			all = append(all, raw)
		}
		for _, raw := range w.rewrite(all) {
			if !yield(raw, nil) {
				return
			}
		}
	}
}

// TestCEErrorsOutOfOrderAndWithoutIndex: errors listed out of index order
// still get their lines (the chunk's index is read into memory); elements
// without an index (a string, an object without one) and an index past
// the chunk's end are kept verbatim, without a line.
func TestCEErrorsOutOfOrderAndWithoutIndex(t *testing.T) {
	extra := []json.RawMessage{
		json.RawMessage(`"74234: Invalid prospect email address"`),
		json.RawMessage(`{"status":"74234: no index"}`),
		json.RawMessage(`{"index":999,"status":"past the end"}`),
	}
	e := setup(t, envOptions{cfg: importer.Config{ChunkRecords: 5}, wrapCE: func(c *ce.Client) ceAPI {
		return errorsWrapper{Client: c, rewrite: func(all []json.RawMessage) []json.RawMessage {
			slices.Reverse(all)
			return append(all, extra...)
		}}
	}})
	data, _ := jsonlFile(10) // good-i on line i + (i-1)/3
	e.failIDs("good-1", "good-4", "good-5", "good-9")
	key := "imports/activities/unordered.jsonl"
	if res := e.importFile(key, data); res.Status != importer.StatusPartial {
		t.Errorf("status = %s, want PARTIAL", res.Status)
	}
	want := []located{
		{1, 4, 6}, {1, 3, 5}, {1, 0, 1}, {1, -1, 0}, {1, -1, 0}, {1, 999, 0},
		{2, 3, 11}, {2, -1, 0}, {2, -1, 0}, {2, 999, 0},
	}
	got := e.ceErrorsOf(key)
	if diff := cmp.Diff(want, locate(got)); diff != "" {
		t.Errorf("CE errors (-want +got):\n%s", diff)
	}
	for _, c := range got {
		if c.Index == nil && !slices.ContainsFunc(extra, func(x json.RawMessage) bool { return bytes.Equal(x, c.Error) }) {
			t.Errorf("error %s not kept verbatim", c.Error)
		}
	}
	s := e.summaryOf(key)
	if s["ceErrors"] != 10.0 || s["ceErrorsWithLine"] != 4.0 || s["ceFailed"] != 4.0 {
		t.Errorf("summary ceErrors %v, ceErrorsWithLine %v, ceFailed %v; want 10, 4, 4", s["ceErrors"], s["ceErrorsWithLine"], s["ceFailed"])
	}
}

// TestCEErrorsOfCheckpointsWithoutLineIndexes: imports checkpointed before
// line indexes existed still finalize; their chunks' errors have no line,
// while chunks committed since have them.
func TestCEErrorsOfCheckpointsWithoutLineIndexes(t *testing.T) {
	// dropIndexes makes the import look as if its chunks so far were
	// committed without line indexes.
	dropIndexes := func(e *env, res importer.Result) {
		e.stripCheckpoint(res.ImportID, "lineIndexFrom")
		for n := 1; n <= res.Chunks; n++ {
			if err := e.store.Delete(t.Context(), bucket, fmt.Sprintf("state/imports/%s/chunk-%04d.lines.gz", res.ImportID, n)); err != nil {
				t.Fatal(err)
			}
		}
	}
	data, _ := jsonlFile(6) // good-i on line i + (i-1)/3: good-3 on 3, good-6 on 7
	t.Run("resumed", func(t *testing.T) {
		e := setup(t, envOptions{cfg: importer.Config{ChunkRecords: 2}})
		e.failIDs("good-1", "good-3", "good-6")
		key := "imports/activities/old.jsonl"
		res := e.importFile(key, data, importer.MaxChunks(1))
		if res.Status != importer.StatusCheckpointed {
			t.Fatalf("first invocation = %+v, want CHECKPOINTED", res)
		}
		dropIndexes(e, res)
		res, err := e.imp.Resume(t.Context(), res.ImportID)
		if err != nil {
			t.Fatal(err)
		}
		if res.Status != importer.StatusPartial || res.Chunks != 3 {
			t.Errorf("result = %+v, want PARTIAL with 3 chunks", res)
		}
		want := []located{{1, 0, 0}, {2, 0, 3}, {3, 1, 7}}
		if diff := cmp.Diff(want, locate(e.ceErrorsOf(key))); diff != "" {
			t.Errorf("CE errors (-want +got):\n%s", diff)
		}
		if s := e.summaryOf(key); s["ceErrors"] != 3.0 || s["ceErrorsWithLine"] != 2.0 {
			t.Errorf("summary ceErrors %v, ceErrorsWithLine %v; want 3, 2", s["ceErrors"], s["ceErrorsWithLine"])
		}
		if keys := e.store.keys(bucket, "state/imports/"); len(keys) != 0 {
			t.Errorf("state parts left: %v", keys)
		}
	})
	t.Run("finalized", func(t *testing.T) {
		e := setup(t, envOptions{cfg: importer.Config{ChunkRecords: 2}, ce: cetest.Options{CompletionDelay: time.Hour}})
		e.failIDs("good-1", "good-6")
		key := "imports/activities/old-waiting.jsonl"
		res := e.importFile(key, data)
		if res.Status != importer.StatusWaiting {
			t.Fatalf("import = %+v, want WAITING", res)
		}
		dropIndexes(e, res)
		e.clock.Advance(2 * time.Hour)
		if res, err := e.imp.Finalize(t.Context(), res.ImportID); err != nil || res.Status != importer.StatusPartial {
			t.Fatalf("Finalize = %+v, %v; want PARTIAL", res, err)
		}
		want := []located{{1, 0, 0}, {3, 1, 0}}
		if diff := cmp.Diff(want, locate(e.ceErrorsOf(key))); diff != "" {
			t.Errorf("CE errors (-want +got):\n%s", diff)
		}
		if s := e.summaryOf(key); s["ceErrors"] != 2.0 || s["ceErrorsWithLine"] != 0.0 {
			t.Errorf("summary ceErrors %v, ceErrorsWithLine %v; want 2, 0", s["ceErrors"], s["ceErrorsWithLine"])
		}
	})
}

// TestLineIndexRewrittenAfterCrash: a worker dies after CE accepted chunk
// 1 but before the checkpoint; the next worker re-reads the span, skips
// the chunk and writes the same line index again.
func TestLineIndexRewrittenAfterCrash(t *testing.T) {
	e := setup(t, envOptions{cfg: importer.Config{ChunkRecords: 2}, ce: cetest.Options{CompletionDelay: time.Hour}})
	e.failIDs("good-2", "good-5")
	data, _ := jsonlFile(6)
	key := "imports/activities/crash-lines.jsonl"
	etag := e.upload(key, data)
	id := importer.ImportID(bucket, key, etag)
	e.store.failWrite = func(k string, cond s3stream.Condition) error {
		if k == ledger.Key(id) && cond.IfMatch != "" {
			return errInjected
		}
		return nil
	}
	if _, err := e.imp.HandleObject(t.Context(), bucket, key, etag, int64(len(data))); err == nil {
		t.Fatal("HandleObject = nil, want the injected failure")
	}
	e.store.failWrite = nil
	linesKey := fmt.Sprintf("state/imports/%s/chunk-0001.lines.gz", id)
	first, ok := e.store.get(bucket, linesKey)
	if !ok {
		t.Fatalf("no %s after chunk 1 was uploaded; keys: %v", linesKey, e.store.keys(bucket, "state/"))
	}
	if err := e.store.Delete(t.Context(), bucket, linesKey); err != nil {
		t.Fatal(err)
	}
	e.clock.Advance(importer.DefaultLease + time.Minute)
	res, err := e.imp.Resume(t.Context(), id)
	if err != nil || res.Status != importer.StatusWaiting {
		t.Fatalf("takeover = %+v, %v; want WAITING", res, err)
	}
	if again, ok := e.store.get(bucket, linesKey); !ok || !bytes.Equal(first, again) {
		t.Errorf("line index of chunk 1 after the takeover = %x (exists %v), want the same bytes %x", again, ok, first)
	}
	if got := e.fake.Requests("POST /bulk/activities"); got != 3 {
		t.Errorf("uploads = %d, want 3 (chunk 1 not sent twice)", got)
	}
	e.clock.Advance(2 * time.Hour)
	if res, err := e.imp.Finalize(t.Context(), id); err != nil || res.Status != importer.StatusPartial {
		t.Fatalf("Finalize = %+v, %v; want PARTIAL", res, err)
	}
	// good-2: line 2, chunk 1 index 1; good-5: line 6, chunk 3 index 0.
	want := []located{{1, 1, 2}, {3, 0, 6}}
	if diff := cmp.Diff(want, locate(e.ceErrorsOf(key))); diff != "" {
		t.Errorf("CE errors (-want +got):\n%s", diff)
	}
}
