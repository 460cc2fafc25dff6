package s3stream_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"io"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/google/go-cmp/cmp"

	"github.com/cebulk/cebulk/internal/awstest"
	"github.com/cebulk/cebulk/internal/s3stream"
)

func newStore(t *testing.T) (*s3stream.Store, string) {
	t.Helper()
	bucket := awstest.NewBucket(t)
	return s3stream.New(awstest.S3(t), s3stream.WithPartSize(5<<20, 2)), bucket
}

func TestPutOpenRoundTrip(t *testing.T) {
	s, bucket := newStore(t)
	for _, tc := range []struct {
		name string
		size int
	}{
		{"empty", 0},
		{"small", 1000},
		{"multipart", 12 << 20}, // three 5 MiB parts
	} {
		t.Run(tc.name, func(t *testing.T) {
			data := make([]byte, tc.size)
			_, _ = rand.Read(data)
			// An unseekable reader, as a CE download is.
			res, err := s.Put(t.Context(), bucket, "obj/"+tc.name, io.MultiReader(bytes.NewReader(data)), s3stream.PutOptions{ContentType: "application/octet-stream"})
			if err != nil {
				t.Fatalf("Put: %v", err)
			}
			if res.ETag == "" {
				t.Errorf("Put returned no ETag")
			}
			if (res.UploadID != "") != (tc.size > 5<<20) {
				t.Errorf("Put UploadID = %q for %d bytes", res.UploadID, tc.size)
			}
			rc, info, err := s.Open(t.Context(), bucket, "obj/"+tc.name)
			if err != nil {
				t.Fatalf("Open: %v", err)
			}
			defer rc.Close()
			got, err := io.ReadAll(rc)
			if err != nil {
				t.Fatalf("read: %v", err)
			}
			if !bytes.Equal(got, data) {
				t.Errorf("round trip: got %d bytes, want %d identical bytes", len(got), len(data))
			}
			if info.Size != int64(tc.size) {
				t.Errorf("Open size = %d, want %d", info.Size, tc.size)
			}
		})
	}
}

type failingReader struct {
	n   int
	err error
}

func (f *failingReader) Read(p []byte) (int, error) {
	if f.n <= 0 {
		return 0, f.err
	}
	if len(p) > f.n {
		p = p[:f.n]
	}
	f.n -= len(p)
	return len(p), nil
}

// A stream that fails midway never leaves an object under the key.
func TestPutFailingStreamLeavesNothing(t *testing.T) {
	s, bucket := newStore(t)
	boom := errors.New("download cut")
	for _, size := range []int{100, 11 << 20} {
		_, err := s.Put(t.Context(), bucket, "partial", &failingReader{n: size, err: boom}, s3stream.PutOptions{})
		if !errors.Is(err, boom) {
			t.Errorf("Put(failing after %d bytes) = %v, want %v", size, err, boom)
		}
		if _, err := s.Head(t.Context(), bucket, "partial"); !errors.Is(err, s3stream.ErrNotFound) {
			t.Errorf("Head after failed Put = %v, want ErrNotFound", err)
		}
	}
	// The multipart upload was aborted: no parts are left to pay for.
	out, err := awstest.S3(t).ListMultipartUploads(t.Context(), &s3.ListMultipartUploadsInput{Bucket: &bucket})
	if err != nil {
		t.Fatalf("ListMultipartUploads: %v", err)
	}
	if len(out.Uploads) != 0 {
		t.Errorf("%d multipart uploads left after failed Puts, want 0", len(out.Uploads))
	}
}

// A cancelled context mid-upload also aborts the multipart upload.
func TestPutCancelledAbortsMultipart(t *testing.T) {
	s, bucket := newStore(t)
	ctx, cancel := context.WithCancel(t.Context())
	r := &cancellingReader{n: 12 << 20, cancelAt: 7 << 20, cancel: cancel}
	if _, err := s.Put(ctx, bucket, "cancelled", r, s3stream.PutOptions{}); err == nil {
		t.Fatalf("Put with a context cancelled mid-stream = nil error")
	}
	out, err := awstest.S3(t).ListMultipartUploads(t.Context(), &s3.ListMultipartUploadsInput{Bucket: &bucket})
	if err != nil {
		t.Fatalf("ListMultipartUploads: %v", err)
	}
	if len(out.Uploads) != 0 {
		t.Errorf("%d multipart uploads left after a cancelled Put, want 0", len(out.Uploads))
	}
}

// cancellingReader yields n zero bytes and cancels its context after
// cancelAt of them.
type cancellingReader struct {
	n, read, cancelAt int
	cancel            context.CancelFunc
}

func (c *cancellingReader) Read(p []byte) (int, error) {
	if c.read >= c.n {
		return 0, io.EOF
	}
	if len(p) > c.n-c.read {
		p = p[:c.n-c.read]
	}
	clear(p)
	c.read += len(p)
	if c.read >= c.cancelAt {
		c.cancel()
	}
	return len(p), nil
}

func TestConditionalWrites(t *testing.T) {
	s, bucket := newStore(t)
	ctx := t.Context()
	etag, err := s.WriteSmall(ctx, bucket, "k", []byte("v1"), "text/plain", s3stream.Condition{IfNoneMatch: true})
	if err != nil {
		t.Fatalf("create: %v", err)
	}
	if _, err := s.WriteSmall(ctx, bucket, "k", []byte("v2"), "text/plain", s3stream.Condition{IfNoneMatch: true}); !errors.Is(err, s3stream.ErrPrecondition) {
		t.Errorf("second create = %v, want ErrPrecondition", err)
	}
	etag2, err := s.WriteSmall(ctx, bucket, "k", []byte("v3"), "text/plain", s3stream.Condition{IfMatch: etag})
	if err != nil {
		t.Fatalf("update with current etag: %v", err)
	}
	if _, err := s.WriteSmall(ctx, bucket, "k", []byte("v4"), "text/plain", s3stream.Condition{IfMatch: etag}); !errors.Is(err, s3stream.ErrPrecondition) {
		t.Errorf("update with stale etag = %v, want ErrPrecondition", err)
	}
	got, gotTag, err := s.ReadSmall(ctx, bucket, "k")
	if err != nil {
		t.Fatalf("ReadSmall: %v", err)
	}
	if string(got) != "v3" || gotTag != etag2 {
		t.Errorf("ReadSmall = %q, %s; want v3, %s", got, gotTag, etag2)
	}
	if _, _, err := s.ReadSmall(ctx, bucket, "missing"); !errors.Is(err, s3stream.ErrNotFound) {
		t.Errorf("ReadSmall(missing) = %v, want ErrNotFound", err)
	}
}

func TestListAndDelete(t *testing.T) {
	s, bucket := newStore(t)
	ctx := t.Context()
	for _, k := range []string{"a/1", "a/2", "a/3", "b/1"} {
		if _, err := s.WriteSmall(ctx, bucket, k, []byte(k), "text/plain", s3stream.Condition{}); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Delete(ctx, bucket, "a/2"); err != nil {
		t.Fatalf("Delete: %v", err)
	}
	if err := s.Delete(ctx, bucket, "a/none"); err != nil {
		t.Errorf("Delete(missing) = %v, want nil", err)
	}
	var keys []string
	for o, err := range s.List(ctx, bucket, "a/") {
		if err != nil {
			t.Fatal(err)
		}
		keys = append(keys, o.Key)
	}
	if diff := cmp.Diff([]string{"a/1", "a/3"}, keys); diff != "" {
		t.Errorf("List mismatch (-want +got):\n%s", diff)
	}
}

func TestOpenRange(t *testing.T) {
	s, bucket := newStore(t)
	ctx := t.Context()
	etag, err := s.WriteSmall(ctx, bucket, "obj", []byte("0123456789"), "text/plain", s3stream.Condition{})
	if err != nil {
		t.Fatal(err)
	}
	bare := strings.Trim(etag, `"`)
	for _, tc := range []struct {
		name   string
		offset int64
		etag   string
		want   string
	}{
		{"from the start", 0, etag, "0123456789"},
		{"from the middle", 3, etag, "3456789"},
		{"ETag without quotes", 9, bare, "9"},
		{"no condition", 5, "", "56789"},
		{"at the end", 10, etag, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rc, info, err := s.OpenRange(ctx, bucket, "obj", tc.offset, tc.etag)
			if err != nil {
				t.Fatalf("OpenRange: %v", err)
			}
			defer rc.Close()
			got, err := io.ReadAll(rc)
			if err != nil {
				t.Fatal(err)
			}
			if string(got) != tc.want || info.Size != 10 || info.ETag != etag {
				t.Errorf("OpenRange(%d) = %q, %+v; want %q, size 10, ETag %s", tc.offset, got, info, tc.want, etag)
			}
		})
	}
	if _, _, err := s.OpenRange(ctx, bucket, "obj", 11, etag); err == nil || !strings.Contains(err.Error(), "has 10 bytes") {
		t.Errorf("OpenRange past the end = %v, want an error", err)
	}
	if _, _, err := s.OpenRange(ctx, bucket, "missing", 1, ""); !errors.Is(err, s3stream.ErrNotFound) {
		t.Errorf("OpenRange(missing) = %v, want ErrNotFound", err)
	}
	// Replaced: the old ETag no longer matches, wherever the offset is.
	if _, err := s.WriteSmall(ctx, bucket, "obj", []byte("abc"), "text/plain", s3stream.Condition{}); err != nil {
		t.Fatal(err)
	}
	for _, offset := range []int64{1, 3, 5} {
		if _, _, err := s.OpenRange(ctx, bucket, "obj", offset, etag); !errors.Is(err, s3stream.ErrPrecondition) {
			t.Errorf("OpenRange(%d) of a replaced object = %v, want ErrPrecondition", offset, err)
		}
	}
}
