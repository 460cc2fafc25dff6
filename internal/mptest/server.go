package mptest

import (
	"net/http/httptest"
	"testing"
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
