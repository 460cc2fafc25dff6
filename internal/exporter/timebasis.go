package exporter

import (
	"fmt"
	"strings"
	"time"
)

// TimeBasis says what the properties.time of the Mixpanel project's events
// counts, and so how days are cut (EXPORT_TIME_BASIS).
type TimeBasis string

// Time bases.
const (
	// BasisUTC: properties.time is UTC seconds (projects created from
	// 2023 on). A day is a calendar day of Config.Location: the instants
	// [00:00, next 00:00) local time, 23 or 25 hours on a DST change.
	BasisUTC TimeBasis = "utc"
	// BasisProject: properties.time counts wall-clock seconds of the
	// project's timezone (projects created before 2023), and export dates
	// are the project's dates. A day is the wall-clock readings [00:00,
	// 24:00) of that date, which as numbers are the UTC-midnight bounds of
	// the date: every record lands in exactly one day, also on DST changes
	// (the repeated hour of a fall-back day belongs to that day twice).
	BasisProject TimeBasis = "project"
)

// DefaultTimeBasis is the basis of projects created from 2023 on.
const DefaultTimeBasis = BasisUTC

// ParseTimeBasis reads EXPORT_TIME_BASIS ("" is DefaultTimeBasis).
func ParseTimeBasis(s string) (TimeBasis, error) {
	switch b := TimeBasis(strings.ToLower(strings.TrimSpace(s))); b {
	case "":
		return DefaultTimeBasis, nil
	case BasisUTC, BasisProject:
		return b, nil
	}
	return "", fmt.Errorf("%q: want utc (projects created from 2023 on) or project (older projects, whose event times are wall-clock time of the project's timezone)", s)
}

// DayWindow returns, for date (midnight UTC of a calendar date, as StartDay
// returns) in loc under basis:
//   - query: the bounds [From, To) asked of CE and compared with each
//     record's properties.time read as Unix seconds. Under BasisUTC the
//     real instants of the local day; under BasisProject the wall-clock
//     bounds of the date, which are the date's UTC midnights as numbers;
//   - end: the real instant the day ends in loc, after which (plus the lag)
//     it can be exported, whatever the basis.
func DayWindow(date time.Time, loc *time.Location, basis TimeBasis) (from, to, end time.Time) {
	lfrom, lto := DayBounds(date, loc)
	if basis == BasisProject {
		ufrom, uto := DayBounds(date, time.UTC)
		return ufrom, uto, lto
	}
	return lfrom.UTC(), lto.UTC(), lto
}

// RecordDay returns the day (YYYY-MM-DD) a record whose properties.time is
// t (as Unix seconds, see eventTime) belongs to: under BasisUTC the local
// date of that instant in loc; under BasisProject the date of the
// wall-clock reading t counts, its UTC date as a number. It is the day
// whose DayWindow query holds t.
func RecordDay(t time.Time, loc *time.Location, basis TimeBasis) string {
	if basis == BasisProject {
		return t.UTC().Format(dayLayout)
	}
	return t.In(loc).Format(dayLayout)
}
