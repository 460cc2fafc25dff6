package importer_test

import (
	"context"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/cebulk/cebulk/internal/importer"
	"github.com/cebulk/cebulk/internal/ledger"
)

// FuzzDryRun feeds arbitrary bytes through the whole import pipeline (as a
// dry run, all in memory) under each kind of name: it must never panic or
// fail, every record read must be either valid or in the rejects, and an
// import that checkpoints and resumes after every chunk must end the same.
func FuzzDryRun(f *testing.F) {
	f.Add(byte(0), []byte(`{"event":"E","properties":{"time":1764028801,"distinct_id":"u1"}}`+"\n[1]\n{bad\n"))
	f.Add(byte(1), []byte("[{\"event\":\"E\",\"properties\":{\"time\":1764028801,\"distinct_id\":\"u1\"}},\n42,\n{}"))
	f.Add(byte(2), []byte("event,time,distinct_id\nE,1764028801,u1\n\"open,1,2\n"))
	f.Add(byte(3), []byte("$distinct_id,plan\nu1,pro\n,free\n"))
	f.Add(byte(0), []byte("\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff"))
	names := []string{"imports/activities/dry-run/f.jsonl", "imports/activities/dry-run/f.json", "imports/activities/dry-run/f.csv", "imports/users/dry-run/f"}
	f.Fuzz(func(t *testing.T, kind byte, data []byte) {
		key := names[int(kind)%len(names)]
		store := newMemStore()
		etag := strings.Trim(store.put(bucket, key, data), `"`)
		imp := importer.New(importer.Config{Bucket: bucket, ChunkRecords: 2}, nil, store, ledger.New(store, bucket), nil, nil)
		res, err := imp.HandleObject(t.Context(), bucket, key, etag, int64(len(data)))
		if err != nil {
			t.Fatalf("HandleObject: %v", err)
		}
		switch res.Status {
		case importer.StatusSucceeded, importer.StatusPartial, importer.StatusFailed:
		default:
			t.Fatalf("status %s", res.Status)
		}
		if res.Records != res.Valid+res.Rejected {
			t.Errorf("records %d != valid %d + rejected %d", res.Records, res.Valid, res.Rejected)
		}
		b, ok := store.get(bucket, "reports/"+key+"/rejects.jsonl.gz")
		if !ok {
			t.Fatal("no rejects.jsonl.gz")
		}
		rejects := parseRejects(t, b)
		if got := len(rejects); int64(got) != res.Rejected {
			t.Errorf("rejects.jsonl.gz has %d lines, want %d", got, res.Rejected)
		}

		store = newMemStore()
		store.put(bucket, key, data)
		imp = importer.New(importer.Config{Bucket: bucket, ChunkRecords: 2}, nil, store, ledger.New(store, bucket),
			func(context.Context, string) error { return nil }, nil)
		resumed, err := imp.HandleObject(t.Context(), bucket, key, etag, int64(len(data)), importer.MaxChunks(1))
		for i := 0; err == nil && resumed.Status == importer.StatusCheckpointed; i++ {
			if i > len(data) {
				t.Fatal("the import never ends")
			}
			resumed, err = imp.Resume(t.Context(), resumed.ImportID, importer.MaxChunks(1))
		}
		if err != nil {
			t.Fatalf("resumed import: %v", err)
		}
		if diff := cmp.Diff(res, resumed); diff != "" {
			t.Errorf("resumed import (-uninterrupted +resumed):\n%s", diff)
		}
		b, _ = store.get(bucket, "reports/"+key+"/rejects.jsonl.gz")
		if diff := cmp.Diff(rejects, parseRejects(t, b)); diff != "" {
			t.Errorf("resumed import's rejects (-uninterrupted +resumed):\n%s", diff)
		}
	})
}
