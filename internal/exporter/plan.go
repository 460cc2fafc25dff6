package exporter

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/cebulk/cebulk/internal/ledger"
)

// Objects the exporter knows how to window.
const (
	// ObjectActivities is exported in day windows of the project's timezone.
	ObjectActivities = "activities"
	// ObjectUsers is exported as a whole snapshot, at most one per hour.
	ObjectUsers = "users"
)

// dayLayout is the format of days in requests, watermarks and job ids.
const dayLayout = time.DateOnly

// snapshotIDLayout and snapshotPartLayout format a users snapshot time in
// its ledger id (export-users-20261126T020000Z) and its partition
// (snapshot=2026-11-26T020000Z).
const (
	snapshotIDLayout   = "20060102T150405Z"
	snapshotPartLayout = "2006-01-02T150405Z"
)

// maxScanDays bounds how many days one plan looks at, whatever the
// watermark or the request says (ten years).
const maxScanDays = 3660

// validObject reports whether o is a CE object name this package accepts:
// ^[a-z][a-z0-9_]{0,63}$.
func validObject(o string) bool {
	return validName(o, 64, isLower, func(c byte) bool { return isLower(c) || isDigit(c) || c == '_' })
}

// validName reports whether s is 1 to maxLen bytes, its first byte passing
// first and the others rest. Names are checked this way rather than with
// regular expressions: a bounded repetition such as {0,127} compiled at
// package initialisation cost every cold start 1–2.5 ms.
func validName(s string, maxLen int, first, rest func(byte) bool) bool {
	if len(s) == 0 || len(s) > maxLen || !first(s[0]) {
		return false
	}
	for i := 1; i < len(s); i++ {
		if !rest(s[i]) {
			return false
		}
	}
	return true
}

func isLower(c byte) bool { return 'a' <= c && c <= 'z' }
func isDigit(c byte) bool { return '0' <= c && c <= '9' }
func isAlnum(c byte) bool { return isLower(c) || isDigit(c) || ('A' <= c && c <= 'Z') }

// Snapshot reports whether object is exported as a whole snapshot rather
// than in day windows.
func Snapshot(object string) bool { return object == ObjectUsers }

// DayJobID returns the ledger id of object's window for day (YYYY-MM-DD):
// export-activities-2026-11-25.
func DayJobID(object, day string) string { return jobIDPrefix(object) + day }

// SnapshotJobID returns the ledger id of a snapshot of object taken at at
// (truncated to the hour, UTC): export-users-20261126T020000Z.
func SnapshotJobID(object string, at time.Time) string {
	return jobIDPrefix(object) + at.UTC().Truncate(time.Hour).Format(snapshotIDLayout)
}

// jobIDPrefix is the prefix of every ledger id of object: export-activities-.
func jobIDPrefix(object string) string { return "export-" + object + "-" }

// Action says what Run does with a planned window.
type Action string

// Plan actions.
const (
	// ActionCreate creates the window's ledger job and starts a CE job.
	ActionCreate Action = "create"
	// ActionRestart moves a final (DONE, FAILED or EXPIRED) job back to
	// PENDING and starts a new CE job: a backfill of a day exported before.
	ActionRestart Action = "restart"
)

// PlannedJob is one window to start.
type PlannedJob struct {
	ID     string        // ledger id
	Object string        // CE object
	Day    string        // YYYY-MM-DD; "" for a snapshot
	Window ledger.Window // [From, To) and the partition; From == To for a snapshot
	Action Action
}

// PlanRequest is the input of Plan. Without From and To it plans the
// scheduled run: for each day object, the days from its watermark on. With
// From and To it plans a backfill of exactly those days. Either way a
// snapshot object (users) gets one snapshot, named by SnapshotAt.
type PlanRequest struct {
	Objects  []string
	Location *time.Location // day boundaries; nil = UTC
	Basis    TimeBasis      // what properties.time counts; "" = BasisUTC
	Now      time.Time
	Lag      time.Duration // a day is exportable once its end + Lag <= Now
	MaxJobs  int           // the most windows planned in total (>= 1)

	// Watermarks maps a day object to the first day not yet exported
	// (YYYY-MM-DD). An object without one starts at Start.
	Watermarks map[string]string
	// Start is the first day when an object has no watermark; "" means
	// yesterday in Location.
	Start string

	// From and To (YYYY-MM-DD, To exclusive) make a backfill.
	From, To string

	// Jobs holds the status of the ledger jobs that already exist, by id.
	// A scheduled run skips every window that has a job; a backfill
	// restarts final jobs and leaves the others alone.
	Jobs map[string]ledger.Status

	// SnapshotAt names the snapshot of each snapshot object (truncated to
	// the hour); zero means Now.
	SnapshotAt time.Time
}

// snapshotAt is the time naming the snapshots: SnapshotAt, or Now when zero.
func (r PlanRequest) snapshotAt() time.Time {
	if r.SnapshotAt.IsZero() {
		return r.Now
	}
	return r.SnapshotAt
}

// PlanResult is what Plan decided.
type PlanResult struct {
	Jobs []PlannedJob // windows to start, at most MaxJobs, in start order
	// Skipped lists the backfill days and snapshots that already have a
	// job and are left alone (a scheduled run passes over existing day jobs
	// without listing them).
	Skipped  []string
	Deferred int      // windows left for a later run because of MaxJobs
	NotReady []string // backfill days that have not ended Lag ago yet
}

// ErrBadPlan is wrapped by Plan's errors about its input.
var ErrBadPlan = errors.New("bad export plan request")

// Plan works out the windows to export. It is pure: everything it needs is
// in r.
//
// Days are aligned to r.Location: a day runs from time.Date(y, m, d, 0, 0,
// 0, 0, loc) to the same for the next date, so days with a daylight saving
// change last 23 or 25 hours, and consecutive windows neither overlap nor
// leave a gap. Windows of different objects are taken in turn (one from
// each object, then the next from each), so one object's backlog does not
// starve the others of r.MaxJobs.
func Plan(r PlanRequest) (PlanResult, error) {
	loc := r.Location
	if loc == nil {
		loc = time.UTC
	}
	if r.MaxJobs < 1 {
		return PlanResult{}, fmt.Errorf("%w: MaxJobs %d: want at least 1", ErrBadPlan, r.MaxJobs)
	}
	if r.Lag < 0 {
		return PlanResult{}, fmt.Errorf("%w: negative lag %v", ErrBadPlan, r.Lag)
	}
	if len(r.Objects) == 0 {
		return PlanResult{}, fmt.Errorf("%w: no objects", ErrBadPlan)
	}
	seen := map[string]bool{}
	for _, o := range r.Objects {
		if !validObject(o) {
			return PlanResult{}, fmt.Errorf("%w: invalid object name %q", ErrBadPlan, o)
		}
		if seen[o] {
			return PlanResult{}, fmt.Errorf("%w: object %q listed twice", ErrBadPlan, o)
		}
		seen[o] = true
	}
	backfill := r.From != "" || r.To != ""

	var res PlanResult
	var from, to time.Time
	if backfill {
		var err error
		if from, to, err = parseRange(r.From, r.To); err != nil {
			return PlanResult{}, err
		}
	}
	queues := make([][]PlannedJob, 0, len(r.Objects))
	for _, o := range r.Objects {
		var q []PlannedJob
		switch {
		case Snapshot(o):
			// One snapshot per run, backfill or not: a snapshot has no past.
			w := snapshotWindow(o, r.snapshotAt())
			if _, ok := r.Jobs[w.ID]; ok {
				res.Skipped = append(res.Skipped, w.ID)
				break
			}
			w.Action = ActionCreate
			q = append(q, w)
		case backfill:
			for d := from; d.Before(to); d = d.AddDate(0, 0, 1) {
				w, end := dayWindow(o, d, loc, r.Basis)
				if end.Add(r.Lag).After(r.Now) {
					res.NotReady = append(res.NotReady, w.ID)
					continue
				}
				switch st, ok := r.Jobs[w.ID]; {
				case !ok:
					w.Action = ActionCreate
				case st.Final():
					w.Action = ActionRestart
				default:
					res.Skipped = append(res.Skipped, w.ID)
					continue
				}
				q = append(q, w)
			}
		default:
			start, ok := r.Watermarks[o]
			if !ok {
				start = r.Start
			}
			first, err := StartDay(start, r.Now, loc)
			if err != nil {
				return PlanResult{}, fmt.Errorf("%w: watermark of %s: %v", ErrBadPlan, o, err)
			}
			for i, d := 0, first; i < maxScanDays; i, d = i+1, d.AddDate(0, 0, 1) {
				w, end := dayWindow(o, d, loc, r.Basis)
				if end.Add(r.Lag).After(r.Now) {
					break
				}
				if _, ok := r.Jobs[w.ID]; ok {
					continue // exported, failed or in flight: a gap the watermark waits at
				}
				w.Action = ActionCreate
				q = append(q, w)
			}
		}
		queues = append(queues, q)
	}

	// Take one window from each object in turn, up to MaxJobs.
	for i := 0; ; i++ {
		more := false
		for _, q := range queues {
			if i >= len(q) {
				continue
			}
			more = true
			if len(res.Jobs) < r.MaxJobs {
				res.Jobs = append(res.Jobs, q[i])
			} else {
				res.Deferred++
			}
		}
		if !more {
			break
		}
	}
	return res, nil
}

// StartDay parses day (YYYY-MM-DD) as a date; "" means yesterday in loc
// as of now. The result is midnight UTC of that date, for date arithmetic.
func StartDay(day string, now time.Time, loc *time.Location) (time.Time, error) {
	if day == "" {
		y, m, d := now.In(loc).Date()
		return time.Date(y, m, d-1, 0, 0, 0, 0, time.UTC), nil
	}
	return parseDay(day)
}

// parseDay parses a YYYY-MM-DD day to midnight UTC of that date.
func parseDay(day string) (time.Time, error) {
	t, err := time.Parse(dayLayout, day)
	if err != nil {
		return time.Time{}, fmt.Errorf("%q is not a day like 2026-11-25", day)
	}
	return t, nil
}

// parseRange checks a backfill range.
func parseRange(fromS, toS string) (from, to time.Time, err error) {
	if fromS == "" || toS == "" {
		return from, to, fmt.Errorf("%w: from and to go together (days, to exclusive)", ErrBadPlan)
	}
	if from, err = parseDay(fromS); err != nil {
		return from, to, fmt.Errorf("%w: from: %v", ErrBadPlan, err)
	}
	if to, err = parseDay(toS); err != nil {
		return from, to, fmt.Errorf("%w: to: %v", ErrBadPlan, err)
	}
	if !to.After(from) {
		return from, to, fmt.Errorf("%w: to %s must be after from %s (to is exclusive)", ErrBadPlan, toS, fromS)
	}
	if days := to.Sub(from) / (24 * time.Hour); days > maxScanDays {
		return from, to, fmt.Errorf("%w: %d days is over the limit of %d", ErrBadPlan, days, maxScanDays)
	}
	return from, to, nil
}

// DayBounds returns the start and end of date's day in loc (date is midnight
// UTC of that date, as returned by StartDay).
func DayBounds(date time.Time, loc *time.Location) (from, to time.Time) {
	y, m, d := date.Date()
	return time.Date(y, m, d, 0, 0, 0, 0, loc), time.Date(y, m, d+1, 0, 0, 0, 0, loc)
}

// dayWindow returns the window of object's day date and the instant the
// day ends (see DayWindow).
func dayWindow(object string, date time.Time, loc *time.Location, basis TimeBasis) (PlannedJob, time.Time) {
	day := date.Format(dayLayout)
	from, to, end := DayWindow(date, loc, basis)
	return PlannedJob{
		ID:     DayJobID(object, day),
		Object: object,
		Day:    day,
		Window: ledger.Window{From: from, To: to, Partition: "dt=" + day},
	}, end
}

func snapshotWindow(object string, at time.Time) PlannedJob {
	at = at.UTC().Truncate(time.Hour)
	return PlannedJob{
		ID:     SnapshotJobID(object, at),
		Object: object,
		Window: ledger.Window{From: at, To: at, Partition: "snapshot=" + at.Format(snapshotPartLayout)},
	}
}

// dayOfJobID returns the day of a day job id of object, or "" when id is
// not one.
func dayOfJobID(object, id string) string {
	day, ok := strings.CutPrefix(id, jobIDPrefix(object))
	if !ok {
		return ""
	}
	if _, err := time.Parse(dayLayout, day); err != nil {
		return ""
	}
	return day
}

// nextDay returns the day after day (YYYY-MM-DD).
func nextDay(day string) (string, error) {
	t, err := parseDay(day)
	if err != nil {
		return "", err
	}
	return t.AddDate(0, 0, 1).Format(dayLayout), nil
}

// LookbackDays returns the n days before next (YYYY-MM-DD, the watermark's
// first day not yet exported), oldest first: the finished days a scheduled
// run exports again, for late events.
func LookbackDays(next string, n int) ([]string, error) {
	t, err := parseDay(next)
	if err != nil {
		return nil, err
	}
	days := make([]string, 0, n)
	for i := n; i >= 1; i-- {
		days = append(days, t.AddDate(0, 0, -i).Format(dayLayout))
	}
	return days, nil
}
