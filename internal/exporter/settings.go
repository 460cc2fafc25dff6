package exporter

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/cebulk/cebulk/internal/budget"
)

// Defaults of the export settings (DESIGN §3).
const (
	DefaultObjects = ObjectActivities + "," + ObjectUsers
	DefaultLag     = 2 * time.Hour
	// DefaultMaxJobs caps the CE jobs one invocation starts; the query
	// budget (EXPORT_QUERIES_PER_HOUR) is the limit across invocations.
	DefaultMaxJobs = 60
	// MaxJobsLimit is Mixpanel's raw-export allowance: 60 queries an hour.
	MaxJobsLimit = 60
	// MaxQueriesPerHour is the most EXPORT_QUERIES_PER_HOUR allows.
	MaxQueriesPerHour = budget.MaxPerHour
	// DefaultQueriesPerHour leaves Mixpanel's other users of the project
	// 10 of its 60 queries an hour.
	DefaultQueriesPerHour = budget.DefaultPerHour
)

// The parsers below check one export setting each, the same way for
// ExportFunction's environment and `cebulk export`'s flags. Their errors
// say what is wanted; callers prefix the name of the variable or flag.

// ParseObjects reads a comma-separated object list ("" is DefaultObjects).
// It reports every problem of the list at once.
func ParseObjects(s string) ([]string, error) {
	if strings.TrimSpace(s) == "" {
		s = DefaultObjects
	}
	var objects, problems []string
	for o := range strings.SplitSeq(s, ",") {
		switch o = strings.TrimSpace(o); {
		case o == "":
		case o != ObjectActivities && o != ObjectUsers:
			problems = append(problems, fmt.Sprintf("unknown object %q: want activities and/or users", o))
		case slices.Contains(objects, o):
			problems = append(problems, fmt.Sprintf("%q listed twice", o))
		default:
			objects = append(objects, o)
		}
	}
	if len(objects) == 0 && len(problems) == 0 {
		problems = append(problems, fmt.Sprintf("%q: want activities and/or users", s))
	}
	if len(problems) > 0 {
		return nil, fmt.Errorf("%s", strings.Join(problems, "; "))
	}
	return objects, nil
}

// ParseDay checks a day such as 2026-11-25 ("" is allowed: no day).
func ParseDay(s string) error {
	if s == "" {
		return nil
	}
	if _, err := time.Parse(time.DateOnly, s); err != nil {
		return fmt.Errorf("%q: want a day like 2026-11-25", s)
	}
	return nil
}

// ParseTimezone reads an IANA zone ("" is UTC). "Local" is refused: the
// machine's zone is not the Mixpanel project's.
func ParseTimezone(s string) (*time.Location, error) {
	if s == "" {
		return time.UTC, nil
	}
	loc, err := time.LoadLocation(s)
	if s == "Local" || err != nil {
		return nil, fmt.Errorf("%q: want an IANA time zone such as UTC or America/New_York", s)
	}
	return loc, nil
}

// ParseLag reads how long after a day ends it is exported ("" is DefaultLag).
func ParseLag(s string) (time.Duration, error) {
	if s == "" {
		return DefaultLag, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil || d < 0 {
		return 0, fmt.Errorf("%q: want a duration such as 2h or 90m", s)
	}
	return d, nil
}

// ParseMaxJobs reads the most CE jobs one invocation starts ("" is
// DefaultMaxJobs).
func ParseMaxJobs(s string) (int, error) {
	if s == "" {
		return DefaultMaxJobs, nil
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 1 || n > MaxJobsLimit {
		return 0, fmt.Errorf("%q: want a whole number from 1 to %d (Mixpanel allows %d export queries an hour)", s, MaxJobsLimit, MaxJobsLimit)
	}
	return n, nil
}

// ParseQueriesPerHour reads the query budget ("" is DefaultQueriesPerHour).
func ParseQueriesPerHour(s string) (int, error) {
	if s == "" {
		return DefaultQueriesPerHour, nil
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 1 || n > MaxQueriesPerHour {
		return 0, fmt.Errorf("%q: want a whole number from 1 to %d (Mixpanel allows a project %d queries an hour)", s, MaxQueriesPerHour, MaxQueriesPerHour)
	}
	return n, nil
}

// DefaultLookback is how many finished days the nightly run exports again
// (EXPORT_LOOKBACK): Mixpanel's mobile SDKs deliver events up to 5 days
// late, and /import writes into any past day.
const DefaultLookback = 5

// MaxLookback bounds EXPORT_LOOKBACK (a month).
const MaxLookback = 31

// ParseLookback reads EXPORT_LOOKBACK, a number of days written "5d" (or
// "5"); "" is DefaultLookback, "0d" turns the look-back off.
func ParseLookback(s string) (int, error) {
	if s == "" {
		return DefaultLookback, nil
	}
	n, err := strconv.Atoi(strings.TrimSuffix(strings.TrimSpace(s), "d"))
	if err != nil || n < 0 || n > MaxLookback {
		return 0, fmt.Errorf("%q: want a number of days such as 5d, from 0d (off) to %dd", s, MaxLookback)
	}
	return n, nil
}
