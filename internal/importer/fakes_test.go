package importer_test

import (
	"bytes"
	"context"
	"crypto/md5"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"iter"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/cebulk/cebulk/internal/s3stream"
)

// memStore is an in-memory S3 with the conditional writes the ledger
// relies on. Hooks inject failures.
type memStore struct {
	mu      sync.Mutex
	objects map[string]memObject // "bucket/key"
	// failWrite, when set, is asked before every write; an error fails it.
	failWrite func(key string, cond s3stream.Condition) error
	// failDelete, when set, is asked before every delete; an error fails it.
	failDelete func(key string) error
	// onRead, when set, is called before every ReadSmall.
	onRead func(key string)
	puts   int
	reads  []sourceRead // Open and OpenRange calls outside state/ and reports/, in order
	calls  []storeCall  // every request, in order
	listed int          // keys yielded by List calls
}

// storeCall is one request to the store: GET (Open, OpenRange,
// ReadSmall), HEAD, PUT (Put, WriteSmall), DELETE or LIST (one List call,
// whatever the number of keys).
type storeCall struct {
	Op  string
	Key string // the key, or the prefix of a LIST
}

func (m *memStore) record(op, key string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.calls = append(m.calls, storeCall{Op: op, Key: key})
}

// requests returns the requests made since the n-th one (n = len of an
// earlier requests(0)).
func (m *memStore) requests(n int) []storeCall {
	m.mu.Lock()
	defer m.mu.Unlock()
	return slices.Clone(m.calls[n:])
}

// sourceRead is one read of an object: where it started and how many
// bytes the reader took.
type sourceRead struct {
	Key    string
	Ranged bool // OpenRange
	Offset int64
	Bytes  int64
}

type memObject struct {
	data     []byte
	etag     string
	modified time.Time
}

func newMemStore() *memStore { return &memStore{objects: map[string]memObject{}} }

func etagOf(b []byte) string {
	sum := md5.Sum(b)
	return `"` + hex.EncodeToString(sum[:]) + `"`
}

func (m *memStore) put(bucket, key string, data []byte) string {
	m.mu.Lock()
	defer m.mu.Unlock()
	tag := etagOf(data)
	m.objects[bucket+"/"+key] = memObject{data: bytes.Clone(data), etag: tag, modified: time.Now()}
	return tag
}

func (m *memStore) get(bucket, key string) ([]byte, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	o, ok := m.objects[bucket+"/"+key]
	return o.data, ok
}

func (m *memStore) keys(bucket, prefix string) []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	var keys []string
	for k := range m.objects {
		if rest, ok := strings.CutPrefix(k, bucket+"/"); ok && strings.HasPrefix(rest, prefix) {
			keys = append(keys, rest)
		}
	}
	slices.Sort(keys)
	return keys
}

func (m *memStore) Open(ctx context.Context, bucket, key string) (io.ReadCloser, s3stream.ObjectInfo, error) {
	m.record("GET", key)
	return m.open(bucket, key, false, 0, "")
}

// OpenRange serves the object from offset on, if its ETag is etag, as
// s3stream.Store.OpenRange does.
func (m *memStore) OpenRange(ctx context.Context, bucket, key string, offset int64, etag string) (io.ReadCloser, s3stream.ObjectInfo, error) {
	m.record("GET", key)
	return m.open(bucket, key, true, offset, etag)
}

func (m *memStore) open(bucket, key string, ranged bool, offset int64, etag string) (io.ReadCloser, s3stream.ObjectInfo, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	source := !strings.HasPrefix(key, "state/") && !strings.HasPrefix(key, "reports/")
	if source {
		m.reads = append(m.reads, sourceRead{Key: key, Ranged: ranged, Offset: offset})
	}
	o, ok := m.objects[bucket+"/"+key]
	switch {
	case !ok:
		return nil, s3stream.ObjectInfo{}, fmt.Errorf("get s3://%s/%s: %w", bucket, key, s3stream.ErrNotFound)
	case etag != "" && strings.Trim(etag, `"`) != strings.Trim(o.etag, `"`):
		return nil, s3stream.ObjectInfo{}, fmt.Errorf("get s3://%s/%s: %w", bucket, key, s3stream.ErrPrecondition)
	case offset > int64(len(o.data)):
		return nil, s3stream.ObjectInfo{}, fmt.Errorf("get s3://%s/%s from byte %d: the object has %d bytes", bucket, key, offset, len(o.data))
	}
	info := s3stream.ObjectInfo{Key: key, Size: int64(len(o.data)), ETag: o.etag, LastModified: o.modified}
	if !source {
		return io.NopCloser(bytes.NewReader(o.data)), info, nil
	}
	return io.NopCloser(&countReader{r: bytes.NewReader(o.data[offset:]), m: m, i: len(m.reads) - 1}), info, nil
}

// countReader counts the bytes read into memStore.reads[i].
type countReader struct {
	r io.Reader
	m *memStore
	i int
}

func (c *countReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.m.mu.Lock()
	c.m.reads[c.i].Bytes += int64(n)
	c.m.mu.Unlock()
	return n, err
}

// sourceReads returns the reads of key's object so far.
func (m *memStore) sourceReads(key string) []sourceRead {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []sourceRead
	for _, r := range m.reads {
		if r.Key == key {
			out = append(out, r)
		}
	}
	return out
}

func (m *memStore) Head(ctx context.Context, bucket, key string) (s3stream.ObjectInfo, error) {
	m.record("HEAD", key)
	rc, info, err := m.open(bucket, key, false, 0, "")
	if err == nil {
		rc.Close()
	}
	return info, err
}

func (m *memStore) Put(ctx context.Context, bucket, key string, r io.Reader, o s3stream.PutOptions) (s3stream.PutResult, error) {
	m.record("PUT", key)
	if err := m.hook(key, s3stream.Condition{}); err != nil {
		return s3stream.PutResult{}, err
	}
	data, err := io.ReadAll(r)
	if err != nil {
		return s3stream.PutResult{}, fmt.Errorf("upload s3://%s/%s: %w", bucket, key, err)
	}
	m.mu.Lock()
	m.puts++
	m.mu.Unlock()
	return s3stream.PutResult{ETag: m.put(bucket, key, data)}, nil
}

func (m *memStore) hook(key string, cond s3stream.Condition) error {
	m.mu.Lock()
	fn := m.failWrite
	m.mu.Unlock()
	if fn != nil {
		return fn(key, cond)
	}
	return nil
}

func (m *memStore) ReadSmall(ctx context.Context, bucket, key string) ([]byte, string, error) {
	m.record("GET", key)
	m.mu.Lock()
	fn := m.onRead
	m.mu.Unlock()
	if fn != nil {
		fn(key)
	}
	rc, info, err := m.open(bucket, key, false, 0, "")
	if err != nil {
		return nil, "", err
	}
	defer rc.Close()
	b, err := io.ReadAll(rc)
	return b, info.ETag, err
}

func (m *memStore) WriteSmall(ctx context.Context, bucket, key string, data []byte, contentType string, cond s3stream.Condition) (string, error) {
	m.record("PUT", key)
	if err := m.hook(key, cond); err != nil {
		return "", err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	o, exists := m.objects[bucket+"/"+key]
	switch {
	case cond.IfNoneMatch && exists:
		return "", fmt.Errorf("put s3://%s/%s: %w", bucket, key, s3stream.ErrPrecondition)
	case cond.IfMatch != "" && (!exists || o.etag != cond.IfMatch):
		return "", fmt.Errorf("put s3://%s/%s: %w", bucket, key, s3stream.ErrPrecondition)
	}
	tag := etagOf(data)
	m.objects[bucket+"/"+key] = memObject{data: bytes.Clone(data), etag: tag, modified: time.Now()}
	return tag, nil
}

func (m *memStore) Delete(ctx context.Context, bucket, key string) error {
	m.record("DELETE", key)
	m.mu.Lock()
	fn := m.failDelete
	m.mu.Unlock()
	if fn != nil {
		if err := fn(key); err != nil {
			return fmt.Errorf("delete s3://%s/%s: %w", bucket, key, err)
		}
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	delete(m.objects, bucket+"/"+key)
	return nil
}

func (m *memStore) List(ctx context.Context, bucket, prefix string) iter.Seq2[s3stream.ObjectInfo, error] {
	return func(yield func(s3stream.ObjectInfo, error) bool) {
		m.record("LIST", prefix)
		for _, k := range m.keys(bucket, prefix) {
			m.mu.Lock()
			o, ok := m.objects[bucket+"/"+k]
			if ok {
				m.listed++
			}
			m.mu.Unlock()
			if !ok {
				continue
			}
			if !yield(s3stream.ObjectInfo{Key: k, Size: int64(len(o.data)), ETag: o.etag, LastModified: o.modified}, nil) {
				return
			}
		}
	}
}

// errInjected is the failure hooks inject.
var errInjected = errors.New("injected failure")

// fakeClock is a settable clock.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}
