package ce

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"io"
	"mime"
	"mime/multipart"
	"net/http"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// uploadedPart is what the test server saw of one multipart part.
type uploadedPart struct {
	Name, FileName, ContentType, Body string
}

// readParts parses a multipart/form-data request body part by part.
func readParts(t *testing.T, r *http.Request) []uploadedPart {
	t.Helper()
	mt, params, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if err != nil || mt != "multipart/form-data" {
		t.Errorf("Content-Type = %q, want multipart/form-data", r.Header.Get("Content-Type"))
		return nil
	}
	mr := multipart.NewReader(r.Body, params["boundary"])
	var parts []uploadedPart
	for {
		p, err := mr.NextPart()
		if err == io.EOF {
			return parts
		}
		if err != nil {
			t.Errorf("NextPart: %v", err)
			return parts
		}
		b, err := io.ReadAll(p)
		if err != nil {
			t.Errorf("read part %q: %v", p.FormName(), err)
		}
		parts = append(parts, uploadedPart{Name: p.FormName(), FileName: p.FileName(), ContentType: p.Header.Get("Content-Type"), Body: string(b)})
	}
}

func TestUpload(t *testing.T) {
	const records = `{"event":"Signed Up","properties":{"distinct_id":"12157","time":1764115200,"$insert_id":"a1"}}` + "\n"
	tests := []struct {
		name       string
		object     string
		opts       UploadOptions
		wantParts  []uploadedPart
		wantHeader string // Elements-Async-Callback-Url
	}{
		{
			name:   "defaults",
			object: "activities",
			wantParts: []uploadedPart{
				{Name: "metaData", Body: `{"format":"json"}`},
				{Name: "file", FileName: "activities.json", ContentType: "application/json", Body: records},
			},
		},
		{
			name:   "callback and payload",
			object: "users",
			opts: UploadOptions{
				FileName:        `chunk "7".jsonl`,
				CallbackURL:     "https://hooks.example.com/callbacks/ce?job=import-1&token=tok-SECRET-99",
				CallbackPayload: map[string]any{"job": "import-1", "chunk": 7},
			},
			wantParts: []uploadedPart{
				{Name: "metaData", Body: `{"format":"json","callback-payload":{"chunk":7,"job":"import-1"}}`},
				{Name: "file", FileName: `chunk "7".jsonl`, ContentType: "application/json", Body: records},
			},
			wantHeader: "https://hooks.example.com/callbacks/ce?job=import-1&token=tok-SECRET-99",
		},
		{
			name:   "csv",
			object: "users",
			opts:   UploadOptions{Format: "csv"},
			wantParts: []uploadedPart{
				{Name: "metaData", Body: `{}`},
				{Name: "file", FileName: "users.csv", ContentType: "text/csv", Body: records},
			},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c, mux, _ := setup(t)
			var calls atomic.Int32
			mux.HandleFunc("/hubs/general/bulk/"+tc.object, func(w http.ResponseWriter, r *http.Request) {
				calls.Add(1)
				testMethod(t, r, "POST")
				testAuth(t, r)
				testHeader(t, r, "Accept", "application/json")
				testHeader(t, r, "Elements-Async-Callback-Url", tc.wantHeader)
				if got := r.TransferEncoding; !cmp.Equal(got, []string{"chunked"}) {
					t.Errorf("TransferEncoding = %v, want chunked (streamed)", got)
				}
				if diff := cmp.Diff(tc.wantParts, readParts(t, r)); diff != "" {
					t.Errorf("multipart parts (-want +got):\n%s", diff)
				}
				w.Write(fixture(t, "upload-created.json"))
			})
			job, err := c.Upload(t.Context(), tc.object, strings.NewReader(records), tc.opts)
			if err != nil {
				t.Fatalf("Upload: %v", err)
			}
			if diff := cmp.Diff(&Job{ID: "1234", Status: StatusCreated}, job); diff != "" {
				t.Errorf("Upload job (-want +got):\n%s", diff)
			}
			if got := calls.Load(); got != 1 {
				t.Errorf("calls = %d, want 1", got)
			}
		})
	}
}

func TestUploadNeverRetried(t *testing.T) {
	for _, status := range []int{http.StatusTooManyRequests, http.StatusServiceUnavailable, http.StatusInternalServerError, http.StatusBadRequest} {
		t.Run(http.StatusText(status), func(t *testing.T) {
			c, mux, _ := setup(t)
			var calls atomic.Int32
			mux.HandleFunc("/hubs/general/bulk/users", func(w http.ResponseWriter, r *http.Request) {
				calls.Add(1)
				io.Copy(io.Discard, r.Body)
				w.Header().Set("Retry-After", "0")
				w.WriteHeader(status)
			})
			_, err := c.Upload(t.Context(), "users", strings.NewReader(`{"$distinct_id":"1","$set":{}}`), UploadOptions{})
			var apiErr *APIError
			if !errors.As(err, &apiErr) || apiErr.StatusCode != status {
				t.Errorf("Upload error = %v, want APIError %d", err, status)
			}
			if got := calls.Load(); got != 1 {
				t.Errorf("calls = %d, want 1", got)
			}
		})
	}
}

// gatedReader produces size bytes, but after the first half it blocks until
// gate is closed: if the client buffered the body, the server would never
// see the first half and the reader fails instead of deadlocking.
type gatedReader struct {
	size, n int64
	gate    <-chan struct{}
	waited  bool
	timeout time.Duration
}

var errServerSawNothing = errors.New("server received nothing while the reader was blocked")

func (g *gatedReader) Read(p []byte) (int, error) {
	if g.n >= g.size {
		return 0, io.EOF
	}
	if g.n >= g.size/2 && !g.waited {
		select {
		case <-g.gate:
			g.waited = true
		case <-time.After(g.timeout): // a failure path only; never hit when streaming works
			return 0, errServerSawNothing
		}
	}
	p = p[:min(int64(len(p)), g.size-g.n, int64(len(alphabetBlock)))]
	copy(p, alphabetBlock)
	g.n += int64(len(p))
	return len(p), nil
}

func TestUploadStreams(t *testing.T) {
	const size = 4 << 20
	c, mux, _ := setup(t)
	gate := make(chan struct{})
	mux.HandleFunc("/hubs/general/bulk/activities", func(w http.ResponseWriter, r *http.Request) {
		_, params, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
		mr := multipart.NewReader(r.Body, params["boundary"])
		var got int64
		for {
			p, err := mr.NextPart()
			if err == io.EOF {
				break
			}
			if err != nil {
				t.Errorf("NextPart: %v", err)
				return
			}
			if p.FormName() != "file" {
				continue
			}
			buf := make([]byte, 32<<10)
			opened := false
			for {
				n, err := p.Read(buf)
				got += int64(n)
				if !opened && got >= size/2 {
					close(gate) // the first half arrived while the reader is blocked
					opened = true
				}
				if err == io.EOF {
					break
				}
				if err != nil {
					t.Errorf("read file part: %v", err)
					return
				}
			}
		}
		if got != size {
			t.Errorf("server received %d file bytes, want %d", got, size)
		}
		w.Write([]byte(`{"id":"1","status":"CREATED"}`))
	})
	src := &gatedReader{size: size, gate: gate, timeout: 20 * time.Second}
	if _, err := c.Upload(t.Context(), "activities", src, UploadOptions{}); err != nil {
		t.Fatalf("Upload: %v", err)
	}
}

// patternReader generates size bytes ("abc...zabc...") without allocating.
type patternReader struct{ size, n int64 }

// alphabetBlock holds the repeating pattern, long enough to fill any read
// with a few copies.
var alphabetBlock = bytes.Repeat([]byte("abcdefghijklmnopqrstuvwxyz"), 2600)

func (p *patternReader) Read(b []byte) (int, error) {
	if p.n >= p.size {
		return 0, io.EOF
	}
	b = b[:min(int64(len(b)), p.size-p.n)]
	for filled := 0; filled < len(b); {
		off := (p.n + int64(filled)) % 26
		filled += copy(b[filled:], alphabetBlock[off:])
	}
	p.n += int64(len(b))
	return len(b), nil
}

func TestUploadLargeStreamKeepsHeapSmall(t *testing.T) {
	if testing.Short() {
		t.Skip("50 MB upload skipped in -short mode")
	}
	const size = 50 << 20
	want := sha256.New()
	io.Copy(want, &patternReader{size: size})

	c, mux, _ := setup(t)
	var gotSum []byte
	var gotSize int64
	mux.HandleFunc("/hubs/general/bulk/activities", func(w http.ResponseWriter, r *http.Request) {
		_, params, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
		mr := multipart.NewReader(r.Body, params["boundary"])
		for {
			p, err := mr.NextPart()
			if err != nil {
				break
			}
			if p.FormName() == "file" {
				h := sha256.New()
				gotSize, _ = io.Copy(h, p)
				gotSum = h.Sum(nil)
			}
		}
		w.Write([]byte(`{"id":"1","status":"CREATED"}`))
	})

	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	if _, err := c.Upload(t.Context(), "activities", &patternReader{size: size}, UploadOptions{}); err != nil {
		t.Fatalf("Upload: %v", err)
	}
	runtime.ReadMemStats(&after)
	if gotSize != size || !bytes.Equal(gotSum, want.Sum(nil)) {
		t.Errorf("server received %d bytes with a different digest, want %d identical bytes", gotSize, size)
	}
	// Client and server together allocate a small fraction of the upload:
	// nothing holds the whole body.
	if alloc := after.TotalAlloc - before.TotalAlloc; alloc > size/4 {
		t.Errorf("upload of %d MiB allocated %d MiB, want < %d MiB", size>>20, alloc>>20, size>>22)
	} else {
		t.Logf("upload of %d MiB allocated %d KiB in total", size>>20, alloc>>10)
	}
}

func TestUploadReaderError(t *testing.T) {
	c, mux, _ := setup(t)
	var calls atomic.Int32
	mux.HandleFunc("/hubs/general/bulk/users", func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		io.Copy(io.Discard, r.Body)
		w.Write([]byte(`{"id":"1","status":"CREATED"}`))
	})
	errS3 := errors.New("s3: connection reset while reading object")
	src := &afterReader{r: io.MultiReader(strings.NewReader(strings.Repeat("y", 100<<10)), errReader{errS3})}
	_, err := c.Upload(t.Context(), "users", src, UploadOptions{})
	if !errors.Is(err, errS3) {
		t.Errorf("Upload error = %v, want one wrapping the reader's error", err)
	}
	src.returned.Store(true)
	if src.readsAfterReturn.Load() != 0 {
		t.Error("the reader was read after Upload returned: a goroutine outlived the call")
	}
	if got := calls.Load(); got > 1 {
		t.Errorf("calls = %d, want at most 1", got)
	}
}

// afterReader counts reads made after returned is set.
type afterReader struct {
	r                io.Reader
	returned         atomic.Bool
	readsAfterReturn atomic.Int32
}

func (a *afterReader) Read(p []byte) (int, error) {
	if a.returned.Load() {
		a.readsAfterReturn.Add(1)
	}
	return a.r.Read(p)
}

func TestUploadServerAnswersEarly(t *testing.T) {
	// CE rejects the request before reading the body (e.g. 401): Upload
	// returns the APIError and stops reading the caller's (endless) reader.
	c, mux, _ := setup(t)
	mux.HandleFunc("/hubs/general/bulk/users", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Connection", "close")
		w.WriteHeader(http.StatusUnauthorized)
		io.WriteString(w, `{"message":"Invalid Element token"}`)
	})
	src := &afterReader{r: &patternReader{size: 1 << 62}}
	_, err := c.Upload(t.Context(), "users", src, UploadOptions{})
	if !errors.Is(err, ErrUnauthorized) {
		t.Errorf("Upload error = %v, want ErrUnauthorized", err)
	}
	src.returned.Store(true)
	runtime.Gosched()
	if src.readsAfterReturn.Load() != 0 {
		t.Error("the reader was read after Upload returned")
	}
}

func TestUploadValidation(t *testing.T) {
	c, _, _ := setup(t)
	tests := []struct {
		name   string
		object string
		r      io.Reader
		opts   UploadOptions
	}{
		{"no object", "", strings.NewReader("{}"), UploadOptions{}},
		{"nil reader", "users", nil, UploadOptions{}},
		{"bad file name", "users", strings.NewReader("{}"), UploadOptions{FileName: "a\r\nb"}},
		{"bad callback", "users", strings.NewReader("{}"), UploadOptions{CallbackURL: "ftp://x?token=tok-SECRET-99"}},
		{"bad payload", "users", strings.NewReader("{}"), UploadOptions{CallbackPayload: make(chan int)}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := c.Upload(t.Context(), tc.object, tc.r, tc.opts); err == nil {
				t.Error("Upload: want error")
			} else {
				assertNoSecrets(t, err.Error())
			}
		})
	}
}
