package ceclient

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cebulk/cebulk/internal/secrets"
	"github.com/cebulk/cebulk/pkg/ce"
)

// rotatingSource serves one secret until rotate is called.
type rotatingSource struct {
	current  atomic.Pointer[secrets.Secret]
	gets     atomic.Int32
	refreshs atomic.Int32
}

func (r *rotatingSource) Get(ctx context.Context) (secrets.Secret, error) {
	r.gets.Add(1)
	return *r.current.Load(), nil
}

func (r *rotatingSource) Refresh(ctx context.Context) (secrets.Secret, error) {
	r.refreshs.Add(1)
	return *r.current.Load(), nil
}

// statusServer answers a job status when the Authorization header carries
// want's user secret, 401 otherwise.
func statusServer(t *testing.T, want *atomic.Pointer[string]) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !strings.Contains(r.Header.Get("Authorization"), "User "+*want.Load()+",") {
			w.WriteHeader(http.StatusUnauthorized)
			_, _ = w.Write([]byte(`{"message":"Invalid credentials","requestId":"r1"}`))
			return
		}
		_, _ = w.Write([]byte(`{"id":"7","status":"COMPLETED","recordsCount":1,"recordsFailedCount":0}`))
	}))
	t.Cleanup(srv.Close)
	return srv
}

func TestRefreshOnUnauthorized(t *testing.T) {
	var accepted atomic.Pointer[string]
	u1, u2 := "user-one", "user-two"
	accepted.Store(&u1)
	srv := statusServer(t, &accepted)
	src := &rotatingSource{}
	src.current.Store(&secrets.Secret{UserSecret: u1, OrganizationSecret: "o", ElementToken: "e"})
	c := New(src, srv.URL, ce.WithRetry(0, time.Millisecond, time.Millisecond))

	if _, err := c.Status(t.Context(), "7"); err != nil {
		t.Fatalf("Status with valid credentials: %v", err)
	}
	// The secret is rotated: CE now wants u2, and the secret holds it.
	accepted.Store(&u2)
	src.current.Store(&secrets.Secret{UserSecret: u2, OrganizationSecret: "o", ElementToken: "e"})
	job, err := c.Status(t.Context(), "7")
	if err != nil {
		t.Fatalf("Status after rotation: %v", err)
	}
	if job.Status != ce.StatusCompleted {
		t.Errorf("Status = %s, want COMPLETED", job.Status)
	}
	if got := src.refreshs.Load(); got != 1 {
		t.Errorf("refreshes = %d, want 1", got)
	}
	if got := src.gets.Load(); got != 1 {
		t.Errorf("secret reads = %d, want 1 (cached)", got)
	}
}

func TestNoRetryWhenSecretUnchanged(t *testing.T) {
	var accepted atomic.Pointer[string]
	other := "someone-else"
	accepted.Store(&other)
	srv := statusServer(t, &accepted)
	src := &rotatingSource{}
	src.current.Store(&secrets.Secret{UserSecret: "stale-SECRET", OrganizationSecret: "o", ElementToken: "e"})
	c := New(src, srv.URL, ce.WithRetry(0, time.Millisecond, time.Millisecond))
	_, err := c.Status(t.Context(), "7")
	if !errors.Is(err, ce.ErrUnauthorized) {
		t.Fatalf("Status = %v, want ErrUnauthorized", err)
	}
	if strings.Contains(err.Error(), "stale-SECRET") {
		t.Errorf("error leaks the secret: %v", err)
	}
	if got := src.refreshs.Load(); got != 1 {
		t.Errorf("refreshes = %d, want 1", got)
	}
}
