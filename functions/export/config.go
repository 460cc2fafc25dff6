package main

import (
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/cebulk/cebulk/internal/logging"
)

// config is the ExportFunction's environment (template.yaml sets it).
type config struct {
	CEBaseURL   string
	SecretID    string
	Bucket      string
	CallbackURL string // "" polls only
	Objects     []string
	Start       string // first day without a watermark; "" = yesterday
	Location    *time.Location
	Lag         time.Duration
	MaxJobs     int
	LogLevel    slog.Level
}

// knownObjects are the CE objects the export handles.
var knownObjects = []string{"activities", "users"}

// loadConfig reads and checks the environment, reporting every problem at
// once.
func loadConfig(getenv func(string) string) (config, error) {
	var problems []string
	bad := func(format string, args ...any) { problems = append(problems, fmt.Sprintf(format, args...)) }
	c := config{
		CEBaseURL:   getenv("CE_BASE_URL"),
		SecretID:    getenv("CE_SECRET_ID"),
		Bucket:      getenv("DATA_BUCKET"),
		CallbackURL: getenv("CALLBACK_URL"),
		Start:       getenv("EXPORT_START"),
		Location:    time.UTC,
		Lag:         2 * time.Hour,
		MaxJobs:     6,
	}
	if c.CEBaseURL == "" {
		c.CEBaseURL = "https://api.cloud-elements.com/elements/api-v2"
	}
	if !absoluteHTTP(c.CEBaseURL) {
		bad("CE_BASE_URL=%q: want an absolute http or https URL", c.CEBaseURL)
	}
	if c.SecretID == "" {
		bad("CE_SECRET_ID is required")
	}
	if c.Bucket == "" {
		bad("DATA_BUCKET is required")
	}
	if c.CallbackURL != "" && !absoluteHTTP(c.CallbackURL) {
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
	level, err := logging.ParseLevel(getenv("LOG_LEVEL"))
	if err != nil {
		bad("%v", err)
	}
	c.LogLevel = level

	if len(problems) > 0 {
		return config{}, errors.New("configuration: " + strings.Join(problems, "; "))
	}
	return c, nil
}

func absoluteHTTP(s string) bool {
	u, err := url.Parse(s)
	return err == nil && (u.Scheme == "http" || u.Scheme == "https") && u.Host != ""
}
