package cetest

import (
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/cebulk/cebulk/internal/memhttp"
)

// NewServer starts an httptest.Server serving a new Fake and closes both
// when the test ends. With opts.AutoCallbacks it also calls Start. The base
// URL of the CE API is BaseURL(srv).
func NewServer(t testing.TB, opts Options) (*httptest.Server, *Fake) {
	t.Helper()
	f := NewFake(opts)
	srv := httptest.NewServer(f)
	t.Cleanup(srv.Close)
	t.Cleanup(f.Close) // runs first: stop callbacks before the server goes
	if opts.AutoCallbacks {
		f.Start()
	}
	return srv, f
}

// BaseURL returns the CE API base URL of a server started by NewServer:
// srv.URL + "/elements/api-v2".
func BaseURL(srv *httptest.Server) string { return srv.URL + "/elements/api-v2" }

// InMemoryBaseURL is a base URL for clients that use Transport: its host is
// never resolved.
const InMemoryBaseURL = "http://cetest.invalid/elements/api-v2"

// Transport returns an http.RoundTripper that serves requests with f in
// memory, without a network: the request body is streamed to the handler
// and the response body streamed back through a pipe. It suits
// testing/synctest, which forbids real network. A download cut by
// CutNextDownload fails the body read with io.ErrUnexpectedEOF, as over a
// real connection.
func (f *Fake) Transport() http.RoundTripper { return memhttp.Transport(f) }
