package mpdirect

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"iter"
	"strconv"
	"strings"
	"time"

	"github.com/cebulk/cebulk/pkg/ce"
	"github.com/cebulk/cebulk/pkg/mixpanel"
)

// Objects the exports serve.
const (
	ObjectActivities = "activities" // the raw event export
	ObjectUsers      = "users"      // the engage query (every user profile)
)

// jobPrefix starts every job id this backend makes.
const jobPrefix = "mp-"

// Exports is the exporter's backend over Mixpanel's raw export and engage
// query. It is safe for concurrent use.
type Exports struct{ c *Client }

// NewExports returns the export backend.
//
// A window is exported as the days its UTC readings fall on, from_date
// and to_date inclusive: Mixpanel reads those dates in UTC for projects
// created after 2023-01-01, and in the project's timezone for older ones,
// whose windows the exporter already writes as wall-clock readings in UTC
// (EXPORT_TIME_BASIS=project). A window that is not a whole such day (a
// day in EXPORT_TIMEZONE other than UTC) spans two dates; the exporter drops
// the records outside it, as it does for CE.
func NewExports(c *Client) *Exports { return &Exports{c: c} }

// query is what a job id names.
type query struct {
	object   string
	from, to time.Time // zero for a snapshot
}

// StartQuery checks q and returns a job that is already COMPLETED: the
// export itself runs when the job is downloaded. Nothing is sent to
// Mixpanel, and callbacks are not supported (q.CallbackURL is ignored:
// nothing would call back).
func (x *Exports) StartQuery(ctx context.Context, q ce.QueryRequest) (*ce.Job, error) {
	if q.Query != "" {
		return nil, fmt.Errorf("mixpanel backend: CEQL queries are not supported (%q)", q.Object)
	}
	var nonce [4]byte
	if _, err := rand.Read(nonce[:]); err != nil {
		return nil, err
	}
	var id string
	switch q.Object {
	case ObjectActivities:
		if q.From.IsZero() || q.To.IsZero() || !q.From.Before(q.To) {
			return nil, fmt.Errorf("mixpanel backend: activities need a window (from %s, to %s)", q.From, q.To)
		}
		id = fmt.Sprintf("%s%s-%d-%d-%s", jobPrefix, q.Object, q.From.Unix(), q.To.Unix(), hex.EncodeToString(nonce[:]))
	case ObjectUsers:
		id = fmt.Sprintf("%s%s-%s", jobPrefix, q.Object, hex.EncodeToString(nonce[:]))
	default:
		return nil, fmt.Errorf("mixpanel backend: unknown object %q (activities, users)", q.Object)
	}
	return &ce.Job{ID: id, Status: ce.StatusCompleted, ObjectName: q.Object}, nil
}

// parseJob reads a job id made by StartQuery; a malformed one is
// ce.ErrNotFound, as CE answers for a job it does not know.
func parseJob(id string) (query, error) {
	bad := fmt.Errorf("mixpanel backend: job %q: %w", id, ce.ErrNotFound)
	rest, ok := strings.CutPrefix(id, jobPrefix)
	if !ok {
		return query{}, bad
	}
	f := strings.Split(rest, "-")
	switch {
	case len(f) == 4 && f[0] == ObjectActivities:
		from, err1 := strconv.ParseInt(f[1], 10, 64)
		to, err2 := strconv.ParseInt(f[2], 10, 64)
		if err1 != nil || err2 != nil || from >= to {
			return query{}, bad
		}
		return query{object: f[0], from: time.Unix(from, 0).UTC(), to: time.Unix(to, 0).UTC()}, nil
	case len(f) == 2 && f[0] == ObjectUsers:
		return query{object: f[0]}, nil
	}
	return query{}, bad
}

// Status returns the job as COMPLETED: its records are whatever the
// export yields, so RecordsCount is 0 (unknown) and the collect checks no
// count.
func (x *Exports) Status(ctx context.Context, jobID string) (*ce.Job, error) {
	q, err := parseJob(jobID)
	if err != nil {
		return nil, err
	}
	return &ce.Job{ID: jobID, Status: ce.StatusCompleted, ObjectName: q.object}, nil
}

// Cancel does nothing: no job runs at Mixpanel.
func (x *Exports) Cancel(ctx context.Context, jobID string) error { return nil }

// Download runs the job's export and streams its records as JSON lines.
// With an offset (ce.WithOffset) the export runs again from its start and
// its first offset bytes are skipped: Mixpanel serves no ranges. When the
// export run again ends before offset, it is not the export the offset was
// taken in, and Download fails with ce.ErrNotFound: the job's result is
// gone, and the exporter starts the window again under a new job.
func (x *Exports) Download(ctx context.Context, jobID, object string, opts ...ce.DownloadOption) (io.ReadCloser, error) {
	q, err := parseJob(jobID)
	if err != nil {
		return nil, err
	}
	if object != q.object {
		return nil, fmt.Errorf("mixpanel backend: job %s is a %s export, not %s: %w", jobID, q.object, object, ce.ErrNotFound)
	}
	set := ce.ReadDownloadOptions(opts...)
	var body io.ReadCloser
	for try := 0; ; try++ {
		body, err = x.open(ctx, q)
		if err == nil || try > 0 || !x.c.unauthorized(ctx, err) {
			break
		}
	}
	if err != nil {
		return nil, err
	}
	if set.Ranges != nil {
		set.Ranges.Ranged = false
	}
	if set.Offset > 0 {
		rest, err := skipTo(body, set.Offset)
		if err != nil {
			body.Close()
			if errors.Is(err, errChanged) {
				// Resuming would splice two different exports: the job's
				// result is gone, as a CE job's expired file is, and the
				// exporter starts the window again under a new job.
				return nil, fmt.Errorf("mixpanel backend: job %s: %w: %w", jobID, err, ce.ErrNotFound)
			}
			return nil, fmt.Errorf("mixpanel backend: skip to offset %d of the export again: %w", set.Offset, err)
		}
		return rest, nil
	}
	return body, nil
}

// errChanged reports a re-run export that is not the one an offset was
// taken in.
var errChanged = errors.New("the export changed since the offset was taken")

// skipTo reads body up to offset and returns the rest. An export run again
// that ends before offset is shorter than the one the offset was taken in
// (events deleted, or a day served differently): it changed (errChanged),
// and no later try of the same job can get past offset. A change that
// leaves it long enough is for the caller to see (the exporter checks the
// record before its checkpoint again).
func skipTo(body io.ReadCloser, offset int64) (io.ReadCloser, error) {
	n, err := io.CopyN(io.Discard, body, offset)
	if errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("%w: it ends at byte %d, before byte %d", errChanged, n, offset)
	}
	if err != nil {
		return nil, err
	}
	return body, nil
}

// open starts q's export. For users the first engage page is read here, so
// a refusal (401, 429 after the retries) is an error of Download, not of
// the stream's first read.
func (x *Exports) open(ctx context.Context, q query) (io.ReadCloser, error) {
	cl, err := x.c.client(ctx)
	if err != nil {
		return nil, err
	}
	if q.object == ObjectActivities {
		last := q.to.Add(-time.Nanosecond)
		return cl.Export(ctx, mixpanel.ExportRequest{From: q.from, To: last})
	}
	ctx, cancel := context.WithCancel(ctx)
	next, stop := iter.Pull2(cl.Profiles(ctx, mixpanel.ProfileQuery{}))
	r := &profileReader{next: next, stop: func() { stop(); cancel() }}
	if err := r.fill(); err != nil && !errors.Is(err, io.EOF) {
		r.Close()
		return nil, err
	}
	return r, nil
}

// profileReader streams an engage query's profiles as JSON lines, one
// profile in memory at a time.
type profileReader struct {
	next func() (json.RawMessage, error, bool)
	stop func()
	buf  []byte
	err  error
}

func (r *profileReader) fill() error {
	if r.err != nil {
		return r.err
	}
	rec, err, ok := r.next()
	switch {
	case !ok:
		r.err = io.EOF
	case err != nil:
		r.err = err
	default:
		r.buf = append(append(r.buf[:0], rec...), '\n')
	}
	return r.err
}

func (r *profileReader) Read(p []byte) (int, error) {
	for len(r.buf) == 0 {
		if err := r.fill(); err != nil {
			return 0, err
		}
	}
	n := copy(p, r.buf)
	r.buf = r.buf[n:]
	return n, nil
}

func (r *profileReader) Close() error {
	r.stop()
	if r.err == nil {
		r.err = errors.New("mixpanel backend: profile stream closed")
	}
	return nil
}
