package importer_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/cebulk/cebulk/internal/importer"
	"github.com/cebulk/cebulk/internal/ledger"
	"github.com/cebulk/cebulk/pkg/ce"
)

// chunkRecorder keeps the body of every upload (CE's fake keeps the
// records, not which upload they came in).
type chunkRecorder struct {
	*ce.Client
	mu     sync.Mutex
	chunks []string // file name, then the JSON lines sent
}

func (c *chunkRecorder) Upload(ctx context.Context, object string, r io.Reader, opts ce.UploadOptions) (*ce.Job, error) {
	b, err := io.ReadAll(r)
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	c.chunks = append(c.chunks, opts.FileName+"\n"+string(b))
	c.mu.Unlock()
	return c.Client.Upload(ctx, object, bytes.NewReader(b), opts)
}

// importRun is what an import did, for comparing two runs.
type importRun struct {
	Chunks      []string
	Rejects     []reject
	Summary     map[string]any
	Reads       []sourceRead
	Invocations int
}

// runImport imports data under key with chunks of 2. With every > 0 each
// invocation checkpoints after that many chunks and the import is
// resumed until it ends; strip drops the reader's position from each
// checkpoint, as checkpoints written before it existed lack it.
func runImport(t *testing.T, key string, data []byte, every int, strip bool) importRun {
	t.Helper()
	var rec *chunkRecorder
	e := setup(t, envOptions{cfg: importer.Config{ChunkRecords: 2}, wrapCE: func(c *ce.Client) ceAPI {
		rec = &chunkRecorder{Client: c}
		return rec
	}})
	var opts []importer.RunOption
	if every > 0 {
		opts = append(opts, importer.MaxChunks(every))
	}
	res := e.importFile(key, data, opts...)
	run := importRun{Invocations: 1}
	for res.Status == importer.StatusCheckpointed {
		if run.Invocations > 100 {
			t.Fatal("the import never ends")
		}
		if strip {
			e.stripResume(res.ImportID)
		}
		var err error
		if res, err = e.imp.Resume(t.Context(), res.ImportID, opts...); err != nil {
			t.Fatalf("Resume: %v", err)
		}
		run.Invocations++
	}
	switch res.Status {
	case importer.StatusSucceeded, importer.StatusPartial, importer.StatusFailed:
	default:
		t.Fatalf("import ended %+v", res)
	}
	run.Chunks = rec.chunks
	run.Rejects = e.rejectsOf(key)
	run.Summary = e.summaryOf(key)
	delete(run.Summary, "timings") // invocations and durations differ
	run.Reads = e.store.sourceReads(key)
	return run
}

// stripResume removes the reader's position from an import's checkpoint.
func (e *env) stripResume(id string) {
	e.t.Helper()
	e.stripCheckpoint(id, "resume")
}

// stripCheckpoint removes field from an import's checkpoint, as
// checkpoints written before the field existed lack it.
func (e *env) stripCheckpoint(id, field string) {
	e.t.Helper()
	b, ok := e.store.get(bucket, ledger.Key(id))
	if !ok {
		e.t.Fatalf("no import record %s", id)
	}
	var rec map[string]any
	if err := json.Unmarshal(b, &rec); err != nil {
		e.t.Fatal(err)
	}
	p := rec["import"].(map[string]any)
	if _, ok := p[field]; !ok {
		e.t.Fatalf("checkpoint without %q: %s", field, b)
	}
	delete(p, field)
	if b, err := json.Marshal(rec); err != nil {
		e.t.Fatal(err)
	} else {
		e.store.put(bucket, ledger.Key(id), b)
	}
}

// resumeFiles are files with what a resume must carry over: a BOM, CRLF,
// quoted line breaks, blank rows and lines, rows that cannot be decoded,
// records Mixpanel refuses, a line over the limit, a last line without a
// line break.
func resumeFiles() []struct{ name, key, data string } {
	var csv strings.Builder
	csv.WriteString("\xef\xbb\xbfevent,time,distinct_id,$insert_id,plan\r\n")
	for i := 1; i <= 9; i++ {
		fmt.Fprintf(&csv, "Signed Up,%d,good-%d,ins-%d,\"pro\r\nplus\"\r\n", 1764028800+i, i, i)
		switch i % 4 {
		case 0:
			csv.WriteString("\r\n,,,,\r\n")
		case 1:
			csv.WriteString("Signed Up,1764028800,\"bad\"quote\",x,pro\r\n")
		case 2:
			csv.WriteString(",1764028800,no-event,x,pro\r\n")
		case 3:
			csv.WriteString("Signed Up,1764028800\n")
		}
	}
	csvText := strings.TrimSuffix(csv.String(), "\r\n")

	jsonl, _ := jsonlFile(9)
	lines := strings.SplitAfter(string(jsonl), "\n")
	long := `{"event":"E","properties":{"blob":"` + strings.Repeat("x", 1200<<10) + `"}}` + "\n"
	jsonlText := strings.Join(lines[:3], "") + "\n  \n" + long + "\xff{}\n" + strings.Join(lines[3:], "")

	var array strings.Builder
	array.WriteString("[\n")
	for i := 1; i <= 9; i++ {
		array.WriteString(activity(fmt.Sprintf("good-%d", i), 1764028800+int64(i)) + ",\n")
		if i%3 == 0 {
			array.WriteString(`  42, {"event":""},` + "\n")
		}
	}
	arrayText := strings.TrimSuffix(array.String(), ",\n") + "\n]\n"

	// 4 valid records and nothing after them: the second chunk ends at
	// the end of the file, so a resume starts there.
	var exact strings.Builder
	for i := 1; i <= 4; i++ {
		exact.WriteString(activity(fmt.Sprintf("good-%d", i), 1764028800+int64(i)) + "\n")
	}

	return []struct{ name, key, data string }{
		{"csv", "imports/activities/r.csv", csvText},
		{"jsonl", "imports/activities/r.jsonl", jsonlText},
		{"json array", "imports/activities/r.json", arrayText},
		{"ends at a chunk's end", "imports/activities/exact.jsonl", exact.String()},
	}
}

// TestResumeFromOffset: an import that checkpoints after every chunk sends
// exactly the chunks, rejects and summary of one that does not, and each
// resume of a plain file reads only from its checkpoint on (a ranged
// read), of a gzipped one from the start.
func TestResumeFromOffset(t *testing.T) {
	for _, f := range resumeFiles() {
		for _, gzipped := range []bool{false, true} {
			name, key, data := f.name, f.key, []byte(f.data)
			if gzipped {
				name, key, data = name+" gzip", key+".gz", gz(t, data)
			}
			t.Run(name, func(t *testing.T) {
				whole := runImport(t, key, data, 0, false)
				resumed := runImport(t, key, data, 1, false)
				if diff := cmp.Diff(whole.Chunks, resumed.Chunks); diff != "" {
					t.Errorf("chunks (-uninterrupted +resumed):\n%s", diff)
				}
				if diff := cmp.Diff(whole.Rejects, resumed.Rejects); diff != "" {
					t.Errorf("rejects (-uninterrupted +resumed):\n%s", diff)
				}
				if diff := cmp.Diff(whole.Summary, resumed.Summary); diff != "" {
					t.Errorf("summary (-uninterrupted +resumed):\n%s", diff)
				}
				if len(whole.Chunks) < 2 || resumed.Invocations < 3 {
					t.Fatalf("%d chunks, %d invocations: the test resumes too little", len(whole.Chunks), resumed.Invocations)
				}

				reads := resumed.Reads
				if len(reads) != resumed.Invocations || reads[0].Ranged || reads[0].Offset != 0 {
					t.Fatalf("reads = %+v, want one per invocation, the first from the start", reads)
				}
				last := int64(0)
				for _, r := range reads[1:] {
					switch {
					case gzipped && (r.Ranged || r.Offset != 0):
						t.Errorf("resume read %+v of a gzipped file, want a read from the start", r)
					case gzipped:
					case !r.Ranged || r.Offset <= last || r.Offset > int64(len(data)):
						t.Errorf("resume read %+v after offset %d, want a ranged read further on", r, last)
					case !bytes.HasSuffix(data[:r.Offset], []byte("\n")) && !bytes.HasSuffix(data[:r.Offset], []byte("}")):
						t.Errorf("resume read from %d, which is not the end of a record: %q", r.Offset, data[max(0, r.Offset-20):r.Offset])
					}
					last = r.Offset
				}
				if !gzipped && f.name == "ends at a chunk's end" && last != int64(len(data)) {
					t.Errorf("last resume read from %d, want %d (the end)", last, len(data))
				}
			})
		}
	}
}

// TestResumeWithoutOffset: a checkpoint written before the reader's
// position was kept is resumed by reading the items before it again.
func TestResumeWithoutOffset(t *testing.T) {
	for _, f := range resumeFiles() {
		t.Run(f.name, func(t *testing.T) {
			whole := runImport(t, f.key, []byte(f.data), 0, false)
			legacy := runImport(t, f.key, []byte(f.data), 1, true)
			if diff := cmp.Diff(whole.Chunks, legacy.Chunks); diff != "" {
				t.Errorf("chunks (-uninterrupted +resumed):\n%s", diff)
			}
			if diff := cmp.Diff(whole.Rejects, legacy.Rejects); diff != "" {
				t.Errorf("rejects (-uninterrupted +resumed):\n%s", diff)
			}
			if diff := cmp.Diff(whole.Summary, legacy.Summary); diff != "" {
				t.Errorf("summary (-uninterrupted +resumed):\n%s", diff)
			}
			for _, r := range legacy.Reads {
				if r.Ranged {
					t.Errorf("read %+v: a checkpoint without a position cannot be read from an offset", r)
				}
			}
		})
	}
}

// TestResumeOfReplacedObject: a ranged resume of an object replaced since
// the import started fails the import, naming the cause, and sends
// nothing more.
func TestResumeOfReplacedObject(t *testing.T) {
	e := setup(t, envOptions{cfg: importer.Config{ChunkRecords: 2}})
	data, _ := jsonlFile(6)
	key := "imports/activities/replaced.jsonl"
	res := e.importFile(key, data, importer.MaxChunks(1))
	if res.Status != importer.StatusCheckpointed {
		t.Fatalf("first invocation = %+v, want CHECKPOINTED", res)
	}
	e.upload(key, append(data, '\n'))
	res, err := e.imp.Resume(t.Context(), res.ImportID)
	if err != nil {
		t.Fatal(err)
	}
	if res.Status != importer.StatusFailed {
		t.Errorf("after the replacement = %+v, want FAILED", res)
	}
	if got := e.fake.Requests("POST /bulk/activities"); got != 1 {
		t.Errorf("uploads = %d, want 1 (the chunk before the replacement)", got)
	}
	if reason, _ := e.summaryOf(key)["reason"].(string); !strings.Contains(reason, "replaced") {
		t.Errorf("summary reason = %q, want the replacement named", reason)
	}
	if reads := e.store.sourceReads(key); len(reads) != 2 || !reads[1].Ranged {
		t.Errorf("reads = %+v, want the first and one ranged read", reads)
	}
}

// TestResumeReadsLittle measures what resumes read: an import of n
// records checkpointed after every chunk reads the file about once in all
// when resumes start at their checkpoint, and about invocations/2 times
// when they skip the items before it (checkpoints without a position).
func TestResumeReadsLittle(t *testing.T) {
	const n, chunk = 10000, 1000
	var b strings.Builder
	for i := 1; i <= n; i++ {
		b.WriteString(activity(fmt.Sprintf("good-%d", i), 1764028800+int64(i)) + "\n")
	}
	data := []byte(b.String())
	key := "imports/activities/many.jsonl"
	read := func(strip bool) (int64, int) {
		e := setup(t, envOptions{cfg: importer.Config{ChunkRecords: chunk}})
		res := e.importFile(key, data, importer.MaxChunks(1))
		invocations := 1
		for ; res.Status == importer.StatusCheckpointed; invocations++ {
			if strip {
				e.stripResume(res.ImportID)
			}
			var err error
			if res, err = e.imp.Resume(t.Context(), res.ImportID, importer.MaxChunks(1)); err != nil {
				t.Fatal(err)
			}
		}
		if res.Status != importer.StatusSucceeded || res.Valid != n {
			t.Fatalf("import = %+v, want SUCCEEDED with %d records", res, n)
		}
		var total int64
		for _, r := range e.store.sourceReads(key) {
			total += r.Bytes
		}
		return total, invocations
	}
	ranged, invocations := read(false)
	skipped, _ := read(true)
	t.Logf("%d invocations over %d bytes: %d bytes read with ranged resumes (%.1fx the file), %d skipping items (%.1fx)",
		invocations, len(data), ranged, float64(ranged)/float64(len(data)), skipped, float64(skipped)/float64(len(data)))
	// Each invocation may read one buffer (64 KiB) past its last chunk.
	if limit := int64(len(data)) + int64(invocations)*(64<<10); ranged > limit {
		t.Errorf("ranged resumes read %d bytes, want at most %d", ranged, limit)
	}
	if skipped < int64(invocations/2)*int64(len(data)) {
		t.Errorf("resumes skipping items read %d bytes: expected about %d", skipped, int64(invocations/2)*int64(len(data)))
	}
}
