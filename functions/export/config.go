package main

import (
	"time"

	"github.com/cebulk/cebulk/internal/exporter"
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
	// QueriesPerHour is the deployment's query budget.
	QueriesPerHour int
	TimeBasis      exporter.TimeBasis
	Lookback       int // days re-exported by the nightly run
}

// loadConfig reads and checks the environment, reporting every problem at
// once.
func loadConfig(getenv func(string) string) (config, error) {
	var problems lambdaenv.Problems
	bad := problems.Addf
	c := config{
		Common:      lambdaenv.ReadCommon(getenv, &problems),
		CallbackURL: getenv("CALLBACK_URL"),
		Start:       getenv("EXPORT_START"),
	}
	if c.CallbackURL != "" && !lambdaenv.AbsoluteHTTP(c.CallbackURL) {
		// The value may carry a secret query: do not echo it.
		bad("CALLBACK_URL: want an absolute http or https URL")
	}
	var err error
	if c.Objects, err = exporter.ParseObjects(getenv("EXPORT_OBJECTS")); err != nil {
		bad("EXPORT_OBJECTS: %v", err)
	}
	if err := exporter.ParseDay(c.Start); err != nil {
		bad("EXPORT_START=%v", err)
	}
	if c.Location, err = exporter.ParseTimezone(getenv("EXPORT_TIMEZONE")); err != nil {
		bad("EXPORT_TIMEZONE=%v", err)
	}
	if c.Lag, err = exporter.ParseLag(getenv("EXPORT_LAG")); err != nil {
		bad("EXPORT_LAG=%v", err)
	}
	if c.MaxJobs, err = exporter.ParseMaxJobs(getenv("EXPORT_MAX_JOBS")); err != nil {
		bad("EXPORT_MAX_JOBS=%v", err)
	}
	if c.QueriesPerHour, err = exporter.ParseQueriesPerHour(getenv("EXPORT_QUERIES_PER_HOUR")); err != nil {
		bad("EXPORT_QUERIES_PER_HOUR=%v", err)
	}
	if c.TimeBasis, err = exporter.ParseTimeBasis(getenv("EXPORT_TIME_BASIS")); err != nil {
		bad("EXPORT_TIME_BASIS=%v", err)
	}
	if c.Lookback, err = exporter.ParseLookback(getenv("EXPORT_LOOKBACK")); err != nil {
		bad("EXPORT_LOOKBACK=%v", err)
	}
	if c.Backend == lambdaenv.BackendMixpanel {
		// Mixpanel's APIs answer synchronously: nothing calls back.
		c.CallbackURL = ""
	}
	if err := problems.Err(); err != nil {
		return config{}, err
	}
	return c, nil
}
