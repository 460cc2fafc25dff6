package budget_test

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/cebulk/cebulk/internal/budget"
	"github.com/cebulk/cebulk/internal/s3stream"
	"github.com/google/go-cmp/cmp"
)

// strictStore is one-key S3 that really enforces If-Match and
// If-None-Match, as S3 does, and counts lost conditions.
type strictStore struct {
	mu     sync.Mutex
	data   map[string][]byte
	tags   map[string]int
	lost   int
	writes int
}

func newStrictStore() *strictStore {
	return &strictStore{data: map[string][]byte{}, tags: map[string]int{}}
}

func (s *strictStore) ReadSmall(_ context.Context, _, key string) ([]byte, string, error) {
	defer time.Sleep(20 * time.Microsecond) // widen the window between read and write, as S3's latency does
	s.mu.Lock()
	defer s.mu.Unlock()
	d, ok := s.data[key]
	if !ok {
		return nil, "", s3stream.ErrNotFound
	}
	return append([]byte(nil), d...), strconv.Itoa(s.tags[key]), nil
}

func (s *strictStore) WriteSmall(_ context.Context, _, key string, data []byte, _ string, cond s3stream.Condition) (string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, exists := s.data[key]
	if (cond.IfNoneMatch && exists) || (cond.IfMatch != "" && (!exists || strconv.Itoa(s.tags[key]) != cond.IfMatch)) {
		s.lost++
		return "", fmt.Errorf("put: %w", s3stream.ErrPrecondition)
	}
	if !cond.IfNoneMatch && cond.IfMatch == "" {
		return "", errors.New("unconditional write of the budget")
	}
	s.writes++
	s.tags[key]++
	s.data[key] = append([]byte(nil), data...)
	return strconv.Itoa(s.tags[key]), nil
}

// stepClock advances by step every every reads, so concurrent claimers
// cross hour boundaries while they race.
type stepClock struct {
	mu          sync.Mutex
	t           time.Time
	step        time.Duration
	every, seen int
}

func (c *stepClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.seen++
	if c.seen%c.every == 0 {
		c.t = c.t.Add(c.step)
	}
	return c.t
}

func noPause(context.Context, int) error { return nil }

func TestConcurrentClaimersNeverExceedTheLimit(t *testing.T) {
	for _, tc := range []struct {
		name       string
		limit      int
		claim      func(b *budget.Budget, ctx context.Context) (budget.Grant, error)
		perClaim   int
		full       int // tokens a full hour grants when demand exceeds supply
		claimsEach int
	}{
		{"one token at a time, limit 15", 15, func(b *budget.Budget, ctx context.Context) (budget.Grant, error) { return b.Claim(ctx, 1) }, 1, 15, 200},
		{"up to 4 at a time, limit 50", 50, func(b *budget.Budget, ctx context.Context) (budget.Grant, error) { return b.ClaimUpTo(ctx, 4) }, 4, 50, 200},
		{"snapshots of 7, limit 60", 60, func(b *budget.Budget, ctx context.Context) (budget.Grant, error) { return b.Claim(ctx, 7) }, 7, 56, 200},
	} {
		t.Run(tc.name, func(t *testing.T) {
			store := newStrictStore()
			clock := &stepClock{t: time.Date(2026, 3, 8, 5, 0, 0, 0, time.UTC), step: 3 * time.Minute, every: 40}
			b, err := budget.New(store, "bucket", tc.limit, budget.WithClock(clock.Now), budget.WithPause(noPause))
			if err != nil {
				t.Fatal(err)
			}
			var mu sync.Mutex
			granted := map[time.Time]int{}
			var wg sync.WaitGroup
			for range 8 {
				wg.Go(func() {
					for range tc.claimsEach {
						g, err := tc.claim(b, t.Context())
						if err != nil {
							t.Error(err)
							return
						}
						if g.Tokens > tc.perClaim {
							t.Errorf("granted %d, asked at most %d", g.Tokens, tc.perClaim)
						}
						mu.Lock()
						granted[g.Hour] += g.Tokens
						mu.Unlock()
					}
				})
			}
			wg.Wait()
			if store.lost == 0 {
				t.Fatal("no claim lost a race: the test did not exercise contention")
			}
			if len(granted) < 3 {
				t.Fatalf("claims spanned %d hours, want at least 3", len(granted))
			}
			for hour, n := range granted {
				if n > tc.limit {
					t.Errorf("hour %s: %d tokens granted, limit %d", hour.Format(time.RFC3339), n, tc.limit)
				}
			}
			// No token lost: what the claimers were granted in the last hour
			// is exactly what the stored object counts.
			u, err := b.Usage(t.Context())
			if err != nil {
				t.Fatal(err)
			}
			if u.Used != granted[u.Hour] {
				t.Errorf("stored usage of %s = %d, claimers were granted %d", u.Hour.Format(time.RFC3339), u.Used, granted[u.Hour])
			}
			// Demand far exceeds supply, so every full hour is used to the
			// last token a claim can take (snapshots of 7 leave 60%7).
			full := tc.full
			for hour, n := range granted {
				if hour.Equal(u.Hour) {
					continue
				}
				if n != full {
					t.Errorf("hour %s: %d tokens granted of %d: tokens lost", hour.Format(time.RFC3339), n, full)
				}
			}
			t.Logf("%d writes, %d lost races, %d hours", store.writes, store.lost, len(granted))
		})
	}
}

func TestClaimAndRefund(t *testing.T) {
	now := time.Date(2026, 12, 2, 2, 10, 0, 0, time.UTC)
	clock := func() time.Time { return now }
	b, err := budget.New(newStrictStore(), "bucket", 10, budget.WithClock(clock), budget.WithPause(noPause))
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	type step struct {
		name string
		do   func() (budget.Grant, error)
		want int
		used int
	}
	var g6 budget.Grant
	steps := []step{
		{"up to 6", func() (budget.Grant, error) { var err error; g6, err = b.ClaimUpTo(ctx, 6); return g6, err }, 6, 6},
		{"all-or-nothing 5 refused", func() (budget.Grant, error) { return b.Claim(ctx, 5) }, 0, 6},
		{"refund 3 of the 6", func() (budget.Grant, error) { return budget.Grant{}, b.Refund(ctx, g6, 3) }, 0, 3},
		{"all-or-nothing 5 now fits", func() (budget.Grant, error) { return b.Claim(ctx, 5) }, 5, 8},
		{"snapshot over the limit needs a whole hour", func() (budget.Grant, error) { return b.Claim(ctx, 500) }, 0, 8},
		{"up to 9 gets the last 2", func() (budget.Grant, error) { return b.ClaimUpTo(ctx, 9) }, 2, 10},
		{"next hour: snapshot of 500 charged as 10", func() (budget.Grant, error) { now = now.Add(time.Hour); return b.Claim(ctx, 500) }, 10, 10},
		{"refund of last hour's grant gives nothing back", func() (budget.Grant, error) { return budget.Grant{}, b.Refund(ctx, g6, 6) }, 0, 10},
	}
	for _, s := range steps {
		g, err := s.do()
		if err != nil {
			t.Fatalf("%s: %v", s.name, err)
		}
		u, err := b.Usage(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff([2]int{s.want, s.used}, [2]int{g.Tokens, u.Used}); diff != "" {
			t.Errorf("%s: [granted used] mismatch (-want +got):\n%s", s.name, diff)
		}
	}
}

func TestNewLimits(t *testing.T) {
	for _, tc := range []struct {
		limit, want int
		ok          bool
	}{{0, 50, true}, {1, 1, true}, {60, 60, true}, {61, 0, false}, {-1, 0, false}} {
		b, err := budget.New(newStrictStore(), "b", tc.limit)
		if (err == nil) != tc.ok {
			t.Errorf("New(%d) error = %v, want ok %v", tc.limit, err, tc.ok)
			continue
		}
		if err == nil && b.Limit() != tc.want {
			t.Errorf("New(%d).Limit() = %d, want %d", tc.limit, b.Limit(), tc.want)
		}
	}
}

func TestReady(t *testing.T) {
	hour := time.Date(2026, 12, 2, 2, 0, 0, 0, time.UTC)
	tests := []struct {
		n, used, limit int
		want           time.Time
	}{
		{0, 0, 50, hour},
		{10, 40, 50, hour},
		{11, 40, 50, hour.Add(time.Hour)},
		{25, 15, 15, hour.Add(2 * time.Hour)},
		{365, 0, 50, hour.Add(7 * time.Hour)}, // a year of one object: 7.3 hours
	}
	for _, tc := range tests {
		if got := budget.Ready(tc.n, budget.Usage{Hour: hour, Used: tc.used, Limit: tc.limit}); !got.Equal(tc.want) {
			t.Errorf("Ready(%d, used %d of %d) = %v, want %v", tc.n, tc.used, tc.limit, got, tc.want)
		}
	}
}
