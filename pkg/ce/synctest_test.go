package ce

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"testing/synctest"
	"time"
)

// newSynctestClient returns a client whose transport calls mux in memory
// (synctest forbids real network) and which keeps its real timers, so the
// fake clock of the bubble drives the waits.
func newSynctestClient(t *testing.T, mux http.Handler, opts ...Option) *Client {
	t.Helper()
	rt := roundTripFunc(func(r *http.Request) (*http.Response, error) {
		if err := r.Context().Err(); err != nil {
			return nil, err
		}
		rec := httptest.NewRecorder()
		mux.ServeHTTP(rec, r)
		return rec.Result(), nil
	})
	c, err := NewClient("https://ce.example.com/elements/api-v2", testCreds, append([]Option{WithHTTPClient(&http.Client{Transport: rt})}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestWaitDeadlineSynctest(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		start := time.Now()
		var mu sync.Mutex
		var polls []time.Duration
		mux := http.NewServeMux()
		mux.HandleFunc("/elements/api-v2/hubs/general/bulk/1/status", func(w http.ResponseWriter, r *http.Request) {
			mu.Lock()
			polls = append(polls, time.Since(start))
			mu.Unlock()
			w.Write([]byte(`{"id":"1","status":"RUNNING"}`))
		})
		c := newSynctestClient(t, mux) // default 15s poll interval
		ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
		defer cancel()
		job, err := c.Wait(ctx, "1")
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("Wait error = %v, want context.DeadlineExceeded", err)
		}
		if job == nil || job.Status != StatusRunning {
			t.Errorf("Wait job = %+v, want the last RUNNING status", job)
		}
		if got := time.Since(start); got != 2*time.Minute {
			t.Errorf("Wait returned after %v, want exactly the 2m deadline", got)
		}
		// Polls at 0, 15s, 33.75s (15+18.75), 57.1875s (+23.4375), 86.484375s (+29.296875).
		want := []time.Duration{0, 15 * time.Second, 33750 * time.Millisecond, 57187500 * time.Microsecond, 86484375 * time.Microsecond}
		mu.Lock()
		defer mu.Unlock()
		if len(polls) != len(want) {
			t.Fatalf("polls at %v, want %v", polls, want)
		}
		for i := range want {
			if polls[i] != want[i] {
				t.Errorf("poll %d at %v, want %v", i, polls[i], want[i])
			}
		}
	})
}

func TestRetryBackoffSynctest(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		start := time.Now()
		var mu sync.Mutex
		var at []time.Duration
		mux := http.NewServeMux()
		mux.HandleFunc("/elements/api-v2/hubs/general/bulk/1/status", func(w http.ResponseWriter, r *http.Request) {
			mu.Lock()
			at = append(at, time.Since(start))
			n := len(at)
			mu.Unlock()
			switch n {
			case 1:
				w.Header().Set("Retry-After", "20")
				w.WriteHeader(http.StatusTooManyRequests)
			case 2:
				w.Header().Set("Retry-After", time.Now().Add(5*time.Second).UTC().Format(http.TimeFormat))
				w.WriteHeader(http.StatusServiceUnavailable)
			case 3:
				w.WriteHeader(http.StatusBadGateway)
			default:
				w.Write([]byte(`{"id":"1","status":"COMPLETED"}`))
			}
		})
		c := newSynctestClient(t, mux) // default retry policy: 4 retries, 500ms..30s
		c.jitter = func(n int64) int64 { return n - 1 }
		if _, err := c.Status(t.Context(), "1"); err != nil {
			t.Fatalf("Status: %v", err)
		}
		mu.Lock()
		defer mu.Unlock()
		if len(at) != 4 {
			t.Fatalf("requests at %v, want 4", at)
		}
		gaps := []time.Duration{at[1] - at[0], at[2] - at[1], at[3] - at[2]}
		if gaps[0] != 20*time.Second {
			t.Errorf("wait after Retry-After: 20 = %v, want 20s", gaps[0])
		}
		// An HTTP date has one-second resolution.
		if gaps[1] < 4*time.Second || gaps[1] > 5*time.Second {
			t.Errorf("wait after a Retry-After date 5s ahead = %v, want 4-5s", gaps[1])
		}
		if gaps[2] != 2*time.Second { // attempt 2: min(30s, 500ms<<2) with maximal jitter
			t.Errorf("backoff wait = %v, want 2s", gaps[2])
		}
	})
}

func TestRetryWaitCanceledSynctest(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		mux := http.NewServeMux()
		mux.HandleFunc("/elements/api-v2/hubs/general/bulk/1/status", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Retry-After", "30")
			w.WriteHeader(http.StatusTooManyRequests)
		})
		c := newSynctestClient(t, mux)
		ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
		defer cancel()
		start := time.Now()
		_, err := c.Status(ctx, "1")
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("Status error = %v, want context.DeadlineExceeded", err)
		}
		if got := time.Since(start); got != 10*time.Second {
			t.Errorf("Status returned after %v, want 10s (the wait selects on ctx.Done)", got)
		}
	})
}
