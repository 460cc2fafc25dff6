package importer_test

import (
	"bytes"
	"compress/gzip"
	"context"
	"io"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/cebulk/cebulk/internal/importer"
	"github.com/cebulk/cebulk/internal/s3stream"
)

// genStore serves one generated source object, never held in memory.
type genStore struct {
	*memStore
	key  string
	open func() io.Reader
}

func (g genStore) Open(ctx context.Context, bucket, key string) (io.ReadCloser, s3stream.ObjectInfo, error) {
	if key != g.key {
		return g.memStore.Open(ctx, bucket, key)
	}
	return io.NopCloser(g.open()), s3stream.ObjectInfo{Key: key, ETag: `"gen"`}, nil
}

func (g genStore) OpenRange(ctx context.Context, bucket, key string, offset int64, etag string) (io.ReadCloser, s3stream.ObjectInfo, error) {
	if key != g.key {
		return g.memStore.OpenRange(ctx, bucket, key, offset, etag)
	}
	r := g.open()
	if _, err := io.CopyN(io.Discard, r, offset); err != nil {
		return nil, s3stream.ObjectInfo{}, err
	}
	return io.NopCloser(r), s3stream.ObjectInfo{Key: key, ETag: `"gen"`}, nil
}

func (g genStore) Head(ctx context.Context, bucket, key string) (s3stream.ObjectInfo, error) {
	return s3stream.ObjectInfo{Key: key, ETag: `"gen"`}, nil
}

// repeatReader yields n bytes of b repeated.
type repeatReader struct {
	b []byte
	n int64
}

func (r *repeatReader) Read(p []byte) (int, error) {
	if r.n <= 0 {
		return 0, io.EOF
	}
	k := 0
	for k < len(p) && r.n > 0 {
		c := copy(p[k:min(len(p), k+int(min(r.n, int64(len(r.b)))))], r.b)
		k += c
		r.n -= int64(c)
	}
	return k, nil
}

// TestOversizeInputsAreRefused: a 100 MB line is one reject and the rest
// of the file is imported; a gzip bomb is refused; the heap stays far
// below the input's size.
func TestOversizeInputsAreRefused(t *testing.T) {
	const lineBytes = 100 << 20
	tests := []struct {
		name, key  string
		open       func() io.Reader
		wantStatus string
		wantIDs    []string
		wantLines  []int
	}{
		{
			name: "100 MB single line",
			key:  "imports/activities/huge-line.jsonl",
			open: func() io.Reader {
				return io.MultiReader(
					strings.NewReader(activity("good-1", 1764028801)+"\n"+`{"event":"E","properties":{"blob":"`),
					&repeatReader{b: bytes.Repeat([]byte("a"), 64<<10), n: lineBytes},
					strings.NewReader(`"}}`+"\n"+activity("good-2", 1764028802)+"\n"))
			},
			wantStatus: importer.StatusPartial, wantIDs: []string{"good-1", "good-2"}, wantLines: []int{2},
		},
		{
			name: "gzip bomb",
			key:  "imports/activities/bomb.jsonl.gz",
			// 1 GiB of zeros in about 1 MB: 1024 gzip members of 1 MiB each
			// (concatenated members are one gzip stream).
			open: func() io.Reader {
				var b bytes.Buffer
				zw, _ := gzip.NewWriterLevel(&b, gzip.BestCompression)
				_, _ = zw.Write(make([]byte, 1<<20))
				_ = zw.Close()
				return bytes.NewReader(bytes.Repeat(b.Bytes(), 1024))
			},
			wantStatus: importer.StatusFailed,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := setup(t, envOptions{})
			src := tc.open() // built before measuring: the bomb's compressed bytes are the input
			gs := genStore{memStore: e.store, key: tc.key, open: func() io.Reader { return src }}
			imp := importer.New(importer.Config{Bucket: bucket, Now: e.clock.Now}, e.ce, gs, e.jobs, nil, nil)
			stop := heapPeak()
			res, err := imp.HandleObject(t.Context(), bucket, tc.key, "gen", 0)
			peak := stop()
			if err != nil {
				t.Fatal(err)
			}
			if res.Status != tc.wantStatus {
				t.Errorf("status = %s, want %s", res.Status, tc.wantStatus)
			}
			if diff := cmp.Diff(tc.wantIDs, e.uploadedIDs("activities")); diff != "" {
				t.Errorf("uploaded (-want +got):\n%s", diff)
			}
			if tc.wantLines != nil {
				rejects := e.rejectsOf(tc.key)
				if diff := cmp.Diff(tc.wantLines, rejectLines(rejects)); diff != "" {
					t.Errorf("reject lines (-want +got):\n%s", diff)
				}
				if len(rejects) == 1 && (!rejects[0].Truncated || !strings.Contains(rejects[0].Reason, "limit")) {
					t.Errorf("reject = %+v, want a truncated record and a reason naming the limit", rejects[0])
				}
			}
			t.Logf("reason: %v; peak heap %.1f MiB", e.summaryOf(tc.key)["reason"], float64(peak)/(1<<20))
			if peak > 64<<20 {
				t.Errorf("peak heap %d MiB reading a %d MiB input", peak>>20, lineBytes>>20)
			}
		})
	}
}
