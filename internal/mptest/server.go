package mptest

import (
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/cebulk/cebulk/internal/memhttp"
)

// NewServer starts an httptest.Server serving a new Fake and closes it when
// the test ends. Every API is under srv.URL (the client's
// MIXPANEL_BASE_URL): /api/2.0/export, /api/query/engage, /import and
// /engage.
func NewServer(t testing.TB, opts Options) (*httptest.Server, *Fake) {
	t.Helper()
	f := NewFake(opts)
	srv := httptest.NewServer(f)
	t.Cleanup(srv.Close)
	return srv, f
}

// InMemoryBaseURL is a base URL for clients that use Transport: its host is
// never resolved.
const InMemoryBaseURL = "http://mptest.invalid"

// Transport returns an http.RoundTripper that serves requests with f in
// memory, streaming both bodies, for tests under testing/synctest (which
// forbids real network): injected delays and retry pauses then take no
// real time. An export cut by CutNextExport fails the body read with
// io.ErrUnexpectedEOF, as over a real connection.
func (f *Fake) Transport() http.RoundTripper { return memhttp.Transport(f) }
