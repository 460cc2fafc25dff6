package main

import (
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/cebulk/cebulk/internal/lambdaenv"
)

func TestLoadConfig(t *testing.T) {
	ny, err := time.LoadLocation("America/New_York")
	if err != nil {
		t.Fatal(err)
	}
	required := map[string]string{"CE_SECRET_ID": "arn:aws:secretsmanager:us-east-1:123456789012:secret:cebulk-ce-AbCdEf", "DATA_BUCKET": "data"}
	with := func(kv ...string) map[string]string {
		m := map[string]string{}
		for k, v := range required {
			m[k] = v
		}
		for i := 0; i < len(kv); i += 2 {
			m[kv[i]] = kv[i+1]
		}
		return m
	}
	defaults := config{Common: lambdaenv.Common{Backend: "ce", MixpanelRegion: "US", MixpanelConcurrency: 10, CEBaseURL: "https://api.cloud-elements.com/elements/api-v2", SecretID: "arn:aws:secretsmanager:us-east-1:123456789012:secret:cebulk-ce-AbCdEf", Bucket: "data", LogLevel: slog.LevelInfo}, Objects: []string{"activities", "users"}, Location: time.UTC, Lag: 2 * time.Hour, MaxJobs: 60, QueriesPerHour: 50, TimeBasis: "utc", Lookback: 5}
	for _, tc := range []struct {
		name    string
		env     map[string]string
		want    config
		wantErr []string
	}{
		{name: "defaults", env: with(), want: defaults},
		{
			name: "everything set",
			env: with("CE_BASE_URL", "http://127.0.0.1:8090/elements/api-v2", "CALLBACK_URL", "https://abc.execute-api.us-east-1.amazonaws.com/callbacks/ce",
				"EXPORT_OBJECTS", " activities ", "EXPORT_START", "2026-11-01", "EXPORT_TIMEZONE", "America/New_York",
				"EXPORT_LAG", "90m", "EXPORT_MAX_JOBS", "12", "LOG_LEVEL", "DEBUG",
				"EXPORT_QUERIES_PER_HOUR", "15", "EXPORT_TIME_BASIS", "project", "EXPORT_LOOKBACK", "0d"),
			want: config{Common: lambdaenv.Common{Backend: "ce", MixpanelRegion: "US", MixpanelConcurrency: 10, CEBaseURL: "http://127.0.0.1:8090/elements/api-v2", SecretID: "arn:aws:secretsmanager:us-east-1:123456789012:secret:cebulk-ce-AbCdEf", Bucket: "data", LogLevel: slog.LevelDebug}, CallbackURL: "https://abc.execute-api.us-east-1.amazonaws.com/callbacks/ce", Objects: []string{"activities"}, Start: "2026-11-01", Location: ny, Lag: 90 * time.Minute, MaxJobs: 12, QueriesPerHour: 15, TimeBasis: "project", Lookback: 0},
		},
		{name: "zero lag", env: with("EXPORT_LAG", "0s"), want: func() config { c := defaults; c.Lag = 0; return c }()},
		{
			name: "everything wrong at once",
			env: map[string]string{"CE_BASE_URL": "api.example.com", "CALLBACK_URL": "/callbacks?token=tok-xyz123", "EXPORT_OBJECTS": "activities,events,activities",
				"EXPORT_START": "yesterday", "EXPORT_TIMEZONE": "Mars/Olympus", "EXPORT_LAG": "-1h", "EXPORT_MAX_JOBS": "61", "LOG_LEVEL": "loud",
				"EXPORT_QUERIES_PER_HOUR": "61", "EXPORT_TIME_BASIS": "local", "EXPORT_LOOKBACK": "1w"},
			wantErr: []string{"CE_BASE_URL", "CE_SECRET_ID is required", "DATA_BUCKET is required", "CALLBACK_URL", `unknown object "events"`,
				`"activities" listed twice`, "EXPORT_START", "EXPORT_TIMEZONE", "EXPORT_LAG", "EXPORT_MAX_JOBS", "LOG_LEVEL",
				"EXPORT_QUERIES_PER_HOUR", "EXPORT_TIME_BASIS", "EXPORT_LOOKBACK"},
		},
		{name: "no objects", env: with("EXPORT_OBJECTS", " , "), wantErr: []string{"EXPORT_OBJECTS"}},
		{name: "local zone", env: with("EXPORT_TIMEZONE", "Local"), wantErr: []string{"EXPORT_TIMEZONE"}},
		{name: "max jobs zero", env: with("EXPORT_MAX_JOBS", "0"), wantErr: []string{"EXPORT_MAX_JOBS"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := loadConfig(func(k string) string { return tc.env[k] })
			if len(tc.wantErr) > 0 {
				if err == nil {
					t.Fatalf("loadConfig = %+v, want an error", got)
				}
				for _, w := range tc.wantErr {
					if !strings.Contains(err.Error(), w) {
						t.Errorf("error %q does not mention %q", err, w)
					}
				}
				if strings.Contains(err.Error(), "tok-xyz123") {
					t.Errorf("error %q echoes the callback URL's token", err)
				}
				return
			}
			if err != nil {
				t.Fatalf("loadConfig: %v", err)
			}
			if diff := cmp.Diff(tc.want, got, cmp.Comparer(func(a, b *time.Location) bool { return a.String() == b.String() })); diff != "" {
				t.Errorf("loadConfig (-want +got):\n%s", diff)
			}
		})
	}
}
