package main

import (
	"context"
	"crypto/tls"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/url"
	"time"

	"github.com/cebulk/cebulk/internal/mptest"
)

// defaultMixpanelAddr is where -api mixpanel listens without -addr, beside
// the CE emulator's default.
const defaultMixpanelAddr = "127.0.0.1:8381"

// mixpanelFlags are the flags that only -api mixpanel reads.
type mixpanelFlags struct {
	username, secret, projectID, token *string
	timezone                           *string
	legacy, discard                    *bool
	pageSize, hourly                   *int
}

func addMixpanelFlags(fs *flag.FlagSet) mixpanelFlags {
	return mixpanelFlags{
		username:  fs.String("mp-username", mptest.DefaultUsername, "mixpanel: the service account `username` to accept"),
		secret:    fs.String("mp-secret", mptest.DefaultSecret, "mixpanel: the service account `secret` to accept"),
		projectID: fs.String("mp-project-id", mptest.DefaultProjectID, "mixpanel: the project `id` (project_id)"),
		token:     fs.String("mp-token", mptest.DefaultToken, "mixpanel: the project `token` /engage updates must carry"),
		timezone:  fs.String("mp-timezone", "UTC", "mixpanel: the project's IANA `timezone` (used with -mp-legacy-time)"),
		legacy:    fs.Bool("mp-legacy-time", false, "mixpanel: a project created before 2023: export dates and times in the project's timezone"),
		discard:   fs.Bool("mp-discard-imports", false, "mixpanel: validate and count /import events without keeping them (for benchmarks; the export does not serve them)"),
		pageSize:  fs.Int("mp-page-size", mptest.DefaultPageSize, "mixpanel: the engage query's page size"),
		hourly:    fs.Int("mp-hourly-limit", mptest.DefaultHourlyLimit, "mixpanel: export and engage query calls allowed per rolling hour (negative: no limit)"),
	}
}

// sampleSpec is what both emulators seed.
type sampleSpec struct {
	addr                string
	tls                 *tls.Config // nil: plain HTTP
	events, users, days int
	seed                int64
	verbose             bool
}

// runMixpanelEmulator serves an mptest.Fake with sample events over the
// last days (ending at today's UTC midnight) and sample profiles.
func runMixpanelEmulator(ctx context.Context, mp mixpanelFlags, spec sampleSpec, stdout, stderr io.Writer) error {
	zone, err := time.LoadLocation(*mp.timezone)
	if err != nil {
		return &usageError{fmt.Errorf("emulator: -mp-timezone %q: %v", *mp.timezone, err)}
	}
	if *mp.pageSize < 1 {
		return &usageError{fmt.Errorf("emulator: -mp-page-size must be at least 1")}
	}
	hourly := *mp.hourly
	if hourly == 0 {
		hourly = -1 // 0 would mean the default; "no calls at all" is not useful
	}
	opts := mptest.Options{
		Username: *mp.username, Secret: *mp.secret, ProjectID: *mp.projectID, Token: *mp.token,
		Timezone: zone, LegacyTime: *mp.legacy, PageSize: *mp.pageSize,
		ExportPerHour: hourly, QueryPerHour: hourly, DiscardImports: *mp.discard,
	}
	if spec.verbose {
		opts.Logger = slog.New(slog.NewTextHandler(stderr, nil))
	}
	fake := mptest.NewFake(opts)
	to := time.Now().UTC().Truncate(24 * time.Hour)
	from := to.AddDate(0, 0, -spec.days)
	perDay := spec.events / spec.days
	fake.SetGenerator(mptest.SampleEvents(spec.seed, perDay, spec.users, from, to))
	fake.SeedProfiles(mptest.SampleProfiles(spec.seed, spec.users))
	err = serveLoopback(ctx, spec.addr, spec.tls, fake, stdout, func(base string) {
		printMixpanelBanner(stdout, base, fake.Options(), perDay*spec.days, spec.users, from, to)
	})
	if err != nil {
		return err
	}
	accepted, dupes, discarded := fake.ImportStats()
	fmt.Fprintf(stdout, "cebulk emulator: /import accepted %d events (%d replaced an identical stored event, %d discarded unstored)\n",
		accepted, dupes, discarded)
	return nil
}

func printMixpanelBanner(w io.Writer, base string, o mptest.Options, events, users int, from, to time.Time) {
	clock := "UTC (a project created after 2023)"
	if o.LegacyTime {
		clock = o.Timezone.String() + " (a project created before 2023: export dates and times in project time)"
	}
	limit := fmt.Sprintf("%d export and %d engage query calls per rolling hour", o.ExportPerHour, o.QueryPerHour)
	if o.ExportPerHour < 0 {
		limit = "none"
	}
	day := from.Format("2006-01-02")
	sa := o.Username + ":" + o.Secret
	fmt.Fprintln(w, "cebulk emulator: Mixpanel APIs (raw export, engage query, /import, /engage) listening")
	fmt.Fprintf(w, "  base URL:        %s\n", base)
	fmt.Fprintf(w, "  username:        %s\n", o.Username)
	fmt.Fprintf(w, "  secret:          %s\n", o.Secret)
	fmt.Fprintf(w, "  project id:      %s\n", o.ProjectID)
	fmt.Fprintf(w, "  project token:   %s\n", o.Token)
	fmt.Fprintf(w, "  project time:    %s\n", clock)
	fmt.Fprintf(w, "  activities:      %d events in [%s, %s)\n", events, from.Format(time.RFC3339), to.Format(time.RFC3339))
	fmt.Fprintf(w, "  users:           %d profiles\n", users)
	fmt.Fprintf(w, "  rate limits:     %s\n", limit)
	if o.DiscardImports {
		fmt.Fprintln(w, "  /import:         events are validated and counted, not kept (-mp-discard-imports)")
	}
	fmt.Fprintln(w, "try:")
	q := url.Values{"project_id": {o.ProjectID}, "from_date": {day}, "to_date": {day}}
	fmt.Fprintf(w, "  curl -sS --compressed -u '%s' '%s/api/2.0/export?%s'\n", sa, base, q.Encode())
	fmt.Fprintf(w, "  curl -sS -u '%s' --data-urlencode 'where=properties[\"plan\"] == \"pro\"' '%s/api/query/engage?project_id=%s'\n", sa, base, o.ProjectID)
	fmt.Fprintf(w, "  curl -sS -u '%s' -H 'Content-Type: application/json' --data '[{\"event\":\"Signed Up\",\"properties\":{\"time\":%d,\"distinct_id\":\"user-1\",\"$insert_id\":\"demo-1\"}}]' '%s/import?strict=1&project_id=%s'\n",
		sa, from.Unix(), base, o.ProjectID)
	fmt.Fprintf(w, "  curl -sS -H 'Content-Type: application/json' --data '[{\"$token\":\"%s\",\"$distinct_id\":\"user-1\",\"$set\":{\"plan\":\"pro\"}}]' '%s/engage?verbose=1'\n",
		o.Token, base)
	fmt.Fprintln(w, "Stop with Ctrl-C.")
}
