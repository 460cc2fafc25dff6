// Package budget is the deployment's Mixpanel query budget: how many export
// queries (CE bulk query jobs, each of which makes CE query Mixpanel) all
// invocations together may start in one clock hour. Mixpanel allows a
// project 60 queries an hour; the budget keeps a deployment under a lower
// limit (EXPORT_QUERIES_PER_HOUR, default 50) so other users of the project
// keep some.
//
// The tokens of the current clock hour (UTC) live in one small JSON object,
// state/budget/queries.json in the data bucket. A claim reads it, adds its
// tokens and writes it back with If-Match on the ETag it read (If-None-Match
// when there is none yet): two invocations claiming at once cannot both
// win, and the loser reads again and retries, so any number of concurrent
// claimers never exceed the limit in any hour and a lost race loses no
// token. A new hour starts from zero.
package budget

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/cebulk/cebulk/internal/httpapi"
	"github.com/cebulk/cebulk/internal/s3stream"
)

// Key is the object holding the budget in the data bucket.
const Key = "state/budget/queries.json"

// Limits of EXPORT_QUERIES_PER_HOUR.
const (
	DefaultPerHour = 50
	MaxPerHour     = 60 // Mixpanel's own limit per project
)

// maxTries bounds the read-modify-write rounds of one claim under
// contention.
const maxTries = 50

// Store is the part of S3 the budget uses. *s3stream.Store implements it;
// a lost condition must wrap s3stream.ErrPrecondition and a missing object
// s3stream.ErrNotFound.
type Store interface {
	ReadSmall(ctx context.Context, bucket, key string) ([]byte, string, error)
	WriteSmall(ctx context.Context, bucket, key string, data []byte, contentType string, cond s3stream.Condition) (string, error)
}

// ErrContention is returned when a claim lost maxTries races in a row.
var ErrContention = errors.New("budget: too many concurrent claims")

// Budget claims query tokens. It is safe for concurrent use, also across
// processes sharing the bucket.
type Budget struct {
	store  Store
	bucket string
	limit  int
	now    func() time.Time
	pause  func(ctx context.Context, try int) error
}

// Option configures a Budget.
type Option func(*Budget)

// WithClock sets the clock (time.Now).
func WithClock(now func() time.Time) Option { return func(b *Budget) { b.now = now } }

// WithPause sets how a claim waits after a lost race (a short random
// sleep); tests pass a no-op.
func WithPause(p func(ctx context.Context, try int) error) Option {
	return func(b *Budget) { b.pause = p }
}

// New returns the budget of bucket with limit tokens per clock hour (1 to
// MaxPerHour; 0 means DefaultPerHour).
func New(store Store, bucket string, limit int, opts ...Option) (*Budget, error) {
	if limit == 0 {
		limit = DefaultPerHour
	}
	if limit < 1 || limit > MaxPerHour {
		return nil, fmt.Errorf("budget: %d queries per hour: want 1 to %d", limit, MaxPerHour)
	}
	b := &Budget{store: store, bucket: bucket, limit: limit, now: time.Now, pause: sleepJitter}
	for _, o := range opts {
		o(b)
	}
	return b, nil
}

// Limit is the tokens of one hour.
func (b *Budget) Limit() int { return b.limit }

// Usage is the state of the current hour.
type Usage struct {
	Hour  time.Time `json:"hour"`  // start of the clock hour (UTC)
	Used  int       `json:"used"`  // tokens granted in it
	Limit int       `json:"limit"` // tokens per hour
}

// Left is the tokens still free in the hour.
func (u Usage) Left() int { return max(0, u.Limit-u.Used) }

// Grant is the outcome of a claim.
type Grant struct {
	Hour   time.Time // the hour charged
	Tokens int       // granted; 0 when the hour's budget is spent
}

// state is the stored object.
type state struct {
	Hour time.Time `json:"hour"`
	Used int       `json:"used"`
}

// Usage reads the current hour's usage.
func (b *Budget) Usage(ctx context.Context) (Usage, error) {
	st, _, err := b.read(ctx)
	if err != nil {
		return Usage{}, err
	}
	return Usage{Hour: st.Hour, Used: st.Used, Limit: b.limit}, nil
}

// Claim takes n tokens at once, or none: a users snapshot that costs n
// queries needs them all. n above the limit is charged as the whole limit,
// so that a snapshot bigger than one hour's budget still runs, alone in an
// hour. n < 1 is taken as 1.
func (b *Budget) Claim(ctx context.Context, n int) (Grant, error) {
	n = min(max(n, 1), b.limit)
	return b.update(ctx, func(used int) int {
		if b.limit-used >= n {
			return n
		}
		return 0
	})
}

// ClaimUpTo takes as many tokens as are free, up to n.
func (b *Budget) ClaimUpTo(ctx context.Context, n int) (Grant, error) {
	if n < 1 {
		return Grant{}, nil
	}
	return b.update(ctx, func(used int) int { return min(n, max(0, b.limit-used)) })
}

// Refund gives back tokens of g that were not spent (a window another
// invocation started first). Tokens of an hour that has ended are not
// given back: that hour is over.
func (b *Budget) Refund(ctx context.Context, g Grant, n int) error {
	n = min(n, g.Tokens)
	if n < 1 {
		return nil
	}
	hour := g.Hour
	_, err := b.updateHour(ctx, func(cur time.Time, used int) int {
		if !cur.Equal(hour) {
			return 0
		}
		return -min(n, used)
	})
	return err
}

// update applies take (tokens to add given the hour's usage) in the current
// hour.
func (b *Budget) update(ctx context.Context, take func(used int) int) (Grant, error) {
	return b.updateHour(ctx, func(_ time.Time, used int) int { return take(used) })
}

// updateHour is the conditional read-modify-write loop.
func (b *Budget) updateHour(ctx context.Context, delta func(hour time.Time, used int) int) (Grant, error) {
	for try := range maxTries {
		st, etag, err := b.read(ctx)
		if err != nil {
			return Grant{}, err
		}
		d := delta(st.Hour, st.Used)
		if d == 0 {
			return Grant{Hour: st.Hour}, nil
		}
		next := state{Hour: st.Hour, Used: st.Used + d}
		data, err := json.Marshal(next)
		if err != nil {
			return Grant{}, err
		}
		cond := s3stream.Condition{IfMatch: etag}
		if etag == "" {
			cond = s3stream.Condition{IfNoneMatch: true}
		}
		_, err = b.store.WriteSmall(ctx, b.bucket, Key, data, "application/json", cond)
		if errors.Is(err, s3stream.ErrPrecondition) {
			if err := b.pause(ctx, try); err != nil {
				return Grant{}, err
			}
			continue
		}
		if err != nil {
			return Grant{}, fmt.Errorf("budget: write: %w", err)
		}
		return Grant{Hour: st.Hour, Tokens: max(d, 0)}, nil
	}
	return Grant{}, ErrContention
}

// read returns the state of the current hour (zero used when the object
// holds an earlier hour or does not exist) and the ETag to write against.
func (b *Budget) read(ctx context.Context) (state, string, error) {
	hour := b.now().UTC().Truncate(time.Hour)
	data, etag, err := b.store.ReadSmall(ctx, b.bucket, Key)
	if errors.Is(err, s3stream.ErrNotFound) {
		return state{Hour: hour}, "", nil
	}
	if err != nil {
		return state{}, "", fmt.Errorf("budget: read: %w", err)
	}
	var st state
	if err := json.Unmarshal(data, &st); err != nil {
		return state{}, "", fmt.Errorf("budget: %s is not a budget: %v", Key, err)
	}
	if !st.Hour.Equal(hour) {
		// A new hour: its tokens are all free. An object from a later hour
		// (a clock behind another invocation's) is left alone by resetting
		// to our hour only when ours is later.
		if st.Hour.Before(hour) {
			st = state{Hour: hour}
		}
	}
	return st, etag, nil
}

// sleepJitter waits 5–50 ms, growing with the try, before a claim retries.
func sleepJitter(ctx context.Context, try int) error {
	return httpapi.Sleep(ctx, time.Duration(5+rand.IntN(10*(min(try, 4)+1)))*time.Millisecond)
}

// Ready returns the start of the clock hour in which n more queries will
// have had their tokens, at u's usage and the whole limit of every later
// hour: u.Hour when they fit in what is left now. It is the estimate of
// the time a run needs, assuming it is the budget's only user.
func Ready(n int, u Usage) time.Time {
	if n <= u.Left() || u.Limit <= 0 {
		return u.Hour
	}
	hours := (n - u.Left() + u.Limit - 1) / u.Limit
	return u.Hour.Add(time.Duration(hours) * time.Hour)
}
