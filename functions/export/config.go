package main

import (
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/cebulk/cebulk/internal/lambdaenv"
)

// config is the ExportFunction's environment (template.yaml sets it).
type config struct {
	lambdaenv.Common
	CallbackURL string // "" polls only
	Objects     []string
	Start       string // first day without a watermark; "" = yesterday
	Location    *time.Location
	Lag         time.Duration
	MaxJobs     int
}

// knownObjects are the CE objects the export handles.
var knownObjects = []string{"activities", "users"}

// loadConfig reads and checks the environment, reporting every problem at
// once.
func loadConfig(getenv func(string) string) (config, error) {
	var problems lambdaenv.Problems
	bad := problems.Addf
	c := config{
		Common:      lambdaenv.ReadCommon(getenv, &problems),
		CallbackURL: getenv("CALLBACK_URL"),
		Start:       getenv("EXPORT_START"),
		Location:    time.UTC,
		Lag:         2 * time.Hour,
		MaxJobs:     6,
	}
	if c.CallbackURL != "" && !lambdaenv.AbsoluteHTTP(c.CallbackURL) {
		// The value may carry a secret query: do not echo it.
		bad("CALLBACK_URL: want an absolute http or https URL")
	}

	objects := getenv("EXPORT_OBJECTS")
	if objects == "" {
		objects = "activities,users"
	}
	for o := range strings.SplitSeq(objects, ",") {
		o = strings.TrimSpace(o)
		switch {
		case o == "":
			continue
		case !slices.Contains(knownObjects, o):
			bad("EXPORT_OBJECTS: unknown object %q: want activities and/or users", o)
		case slices.Contains(c.Objects, o):
			bad("EXPORT_OBJECTS: %q listed twice", o)
		default:
			c.Objects = append(c.Objects, o)
		}
	}
	if len(c.Objects) == 0 {
		bad("EXPORT_OBJECTS=%q: want activities and/or users", objects)
	}

	if c.Start != "" {
		if _, err := time.Parse(time.DateOnly, c.Start); err != nil {
			bad("EXPORT_START=%q: want a day like 2026-11-25", c.Start)
		}
	}
	if tz := getenv("EXPORT_TIMEZONE"); tz != "" {
		loc, err := time.LoadLocation(tz)
		switch {
		case tz == "Local" || err != nil:
			bad("EXPORT_TIMEZONE=%q: want an IANA time zone such as UTC or America/New_York", tz)
		default:
			c.Location = loc
		}
	}
	if v := getenv("EXPORT_LAG"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d < 0 {
			bad("EXPORT_LAG=%q: want a duration such as 2h or 90m", v)
		}
		c.Lag = d
	}
	if v := getenv("EXPORT_MAX_JOBS"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 60 {
			bad("EXPORT_MAX_JOBS=%q: want a whole number from 1 to 60 (Mixpanel allows 60 export queries an hour)", v)
		}
		c.MaxJobs = n
	}
	if err := problems.Err(); err != nil {
		return config{}, err
	}
	return c, nil
}
