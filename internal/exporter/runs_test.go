package exporter

import (
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/cebulk/cebulk/internal/budget"
	"github.com/cebulk/cebulk/internal/cetest"
	"github.com/cebulk/cebulk/internal/ledger"
)

func TestNewRunThreeYears(t *testing.T) {
	now := time.Date(2026, 12, 2, 3, 0, 0, 0, time.UTC)
	tests := []struct {
		name               string
		from, to           string
		lag                time.Duration
		wantDays, notReady int
		first, last        string
		wantErr            bool
	}{
		{name: "three years", from: "2023-12-01", to: "2026-12-01", wantDays: 1096, first: "2023-12-01", last: "2026-11-30"},
		{name: "up to today: today not ready", from: "2026-11-01", to: "2026-12-03", lag: 2 * time.Hour, wantDays: 31, notReady: 1, first: "2026-11-01", last: "2026-12-01"},
		{name: "over three years", from: "2023-11-30", to: "2026-12-01", wantErr: true},
		{name: "empty", from: "2026-11-01", to: "2026-11-01", wantErr: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r, err := NewRun("run-1", "tester", []string{ObjectActivities, ObjectUsers}, tc.from, tc.to, now, time.UTC, BasisUTC, tc.lag)
			if (err != nil) != tc.wantErr {
				t.Fatalf("NewRun error = %v, want error %v", err, tc.wantErr)
			}
			if err != nil {
				return
			}
			if len(r.Days) != tc.wantDays || len(r.NotReady) != tc.notReady {
				t.Fatalf("%d days, %d not ready; want %d, %d", len(r.Days), len(r.NotReady), tc.wantDays, tc.notReady)
			}
			if got := []string{r.Days[0].Day, r.Days[len(r.Days)-1].Day}; !cmp.Equal(got, []string{tc.first, tc.last}) {
				t.Errorf("days run %v, want %s..%s", got, tc.first, tc.last)
			}
			if !cmp.Equal(r.Objects, []string{ObjectActivities}) {
				t.Errorf("objects = %v: a run holds day objects only", r.Objects)
			}
			// Oldest first, and each call takes the next PENDING ones.
			idx := r.NextDays(50)
			for i, k := range idx {
				if k != i {
					t.Fatalf("NextDays = %v, want the oldest first", idx)
				}
				r.Days[k].State = DayStarted
			}
			if next := r.NextDays(1); len(r.Days) > 50 && (len(next) != 1 || next[0] != len(idx)) {
				t.Errorf("NextDays after 50 started = %v, want [%d]", next, len(idx))
			}
			p := r.Progress()
			if p.Started != min(50, len(r.Days)) || p.Pending != len(r.Days)-p.Started || r.Status != RunRunning {
				t.Errorf("progress = %+v, status %s", p, r.Status)
			}
			for i := range r.Days {
				r.Days[i].State = DayDone
			}
			r.Days[3].State = DayFailed
			r.settle()
			if p := r.Progress(); r.Status != RunPartial || !cmp.Equal(p.FailedDays, []string{r.Days[3].JobID()}) {
				t.Errorf("status %s, failed %v; want PARTIAL naming day 3", r.Status, p.FailedDays)
			}
		})
	}
}

// TestRunHourByHour: a 40-day backfill under a budget of 15 queries an hour
// starts 15 days in the hour of the request, nothing more in that hour
// however many sweeps run, 15 more in each later hour, and ends DONE with
// every partition exact, never spending more than 15 queries in an hour.
func TestRunHourByHour(t *testing.T) {
	e := newEnv(t, cetest.Options{}, Config{})
	// Start five minutes into an hour, so that sweeps in "the same hour"
	// stay in it.
	now := e.clock.Now()
	e.clock.Add(now.Truncate(time.Hour).Add(time.Hour + 5*time.Minute).Sub(now))
	byDay := seedActivities(e.fake, 4000, dayStart(e.day(-45)), dayStart(e.day(0)))
	b, err := budget.New(e.s3, e.bucket, 15, budget.WithClock(e.clock.Now))
	if err != nil {
		t.Fatal(err)
	}
	e.cfg.Budget = b
	ex := e.exporter(nil, nil)

	from, to := e.day(-42), e.day(-2)
	run := mustRun(t, ex, RunRequest{From: from, To: to, RunID: "backfill-40", By: "test"})
	if len(run.Started) != 15 || run.Deferred != 25 || run.RunID != "backfill-40" {
		t.Fatalf("run = %d started, %d deferred, id %q; want 15, 25, backfill-40", len(run.Started), run.Deferred, run.RunID)
	}
	if got := startedIDs(run)[0]; got != DayJobID(ObjectActivities, from) {
		t.Errorf("first day started = %s, want the oldest, %s", got, from)
	}
	for range 3 {
		e.clock.Add(2 * time.Minute)
		if s := mustSweep(t, ex); len(s.Started) != 0 {
			t.Fatalf("a sweep in the same hour started %v", s.Started)
		}
	}
	// The run and each sweep report the hour's budget as spent.
	if diff := cmp.Diff(map[string][]float64{"": {0, 0, 0, 0}}, metricValues(t, e, MetricBudgetLeft)); diff != "" {
		t.Errorf("BudgetLeft after the run and three sweeps (-want +got):\n%s", diff)
	}
	r, _, err := ReadRun(t.Context(), e.s3, e.bucket, "backfill-40")
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := e.get(t, OpenRunsPrefix+"backfill-40"); !ok {
		t.Error("a RUNNING run has no open marker")
	}
	if p := r.Progress(); p.Done != 15 || p.Pending != 25 || p.Records == 0 {
		t.Errorf("after the first hour: %+v, want 15 done (collected by the sweeps), 25 pending", p)
	}
	hours := 1
	for ; hours < 10; hours++ {
		e.clock.Add(time.Hour)
		mustSweep(t, ex) // starts the next 15
		e.clock.Add(2 * time.Minute)
		mustSweep(t, ex) // collects them
		if r, _, err = ReadRun(t.Context(), e.s3, e.bucket, "backfill-40"); err != nil {
			t.Fatal(err)
		}
		if r.Status != RunRunning {
			break
		}
	}
	if _, ok := e.get(t, OpenRunsPrefix+"backfill-40"); ok == (r.Status == RunDone) {
		t.Errorf("open marker present %v with the run %s", ok, r.Status)
	}
	if r.Status != RunDone || hours != 2 {
		t.Fatalf("run %s after %d hours (%+v), want DONE 2 hours after the request", r.Status, hours, r.Progress())
	}
	var total int64
	for d := dayStart(from); d.Before(dayStart(to)); d = d.AddDate(0, 0, 1) {
		day := d.Format(dayLayout)
		e.checkPartition(t, ObjectActivities, "dt="+day, byDay[day])
		total += int64(len(byDay[day]))
	}
	if p := r.Progress(); p.Records != total {
		t.Errorf("run records = %d, want %d", p.Records, total)
	}
	// Never more than 15 queries in any clock hour.
	start := now.Truncate(time.Hour).Add(time.Hour)
	for h := range hours + 1 {
		from := start.Add(time.Duration(h) * time.Hour)
		if q := e.fake.QueryCost(from, from.Add(time.Hour)); q > 15 {
			t.Errorf("hour %d: %d queries, budget 15", h, q)
		}
	}
	if n := len(e.fake.Jobs()); n != 40 {
		t.Errorf("%d CE jobs, want 40: one per day", n)
	}
}

// TestNightlyBeforeBackfill: the days a scheduled run could not start for
// want of budget become a run that the sweeps advance before a long
// backfill, which takes what is left of each hour.
func TestNightlyBeforeBackfill(t *testing.T) {
	e := newEnv(t, cetest.Options{}, Config{})
	now := e.clock.Now()
	e.clock.Add(now.Truncate(time.Hour).Add(time.Hour + 5*time.Minute).Sub(now))
	seedActivities(e.fake, 2000, dayStart(e.day(-40)), dayStart(e.day(0)))
	b, err := budget.New(e.s3, e.bucket, 3, budget.WithClock(e.clock.Now))
	if err != nil {
		t.Fatal(err)
	}
	e.cfg.Budget, e.cfg.Start = b, e.day(-5)
	ex := e.exporter(nil, nil)

	if r := mustRun(t, ex, RunRequest{From: e.day(-30), To: e.day(-20), RunID: "long"}); len(r.Started) != 3 || r.Deferred != 7 {
		t.Fatalf("backfill: %d started, %d deferred; want 3, 7", len(r.Started), r.Deferred)
	}
	e.clock.Add(time.Hour)
	night := mustRun(t, ex, RunRequest{At: e.clock.Now()})
	if len(night.Started) != 3 || night.Deferred != 2 || !strings.HasPrefix(night.RunID, "nightly-") {
		t.Fatalf("nightly: %d started, %d deferred, run %q; want 3, 2 and a nightly run", len(night.Started), night.Deferred, night.RunID)
	}
	e.clock.Add(time.Hour)
	s := mustSweep(t, ex)
	want := []string{DayJobID(ObjectActivities, e.day(-2)), DayJobID(ObjectActivities, e.day(-1)), DayJobID(ObjectActivities, e.day(-27))}
	if diff := cmp.Diff(want, s.Started); diff != "" {
		t.Errorf("sweep started (-want +got): the nightly's days first, then the backfill's oldest\n%s", diff)
	}
}

// TestSnapshotChargedByLastProfileCount: a users snapshot costs one token
// the first time, then ⌈profiles of the last DONE snapshot / 1000⌉.
func TestSnapshotChargedByLastProfileCount(t *testing.T) {
	e := newEnv(t, cetest.Options{}, Config{Objects: []string{ObjectUsers}})
	now := e.clock.Now()
	e.clock.Add(now.Truncate(time.Hour).Add(time.Hour + 5*time.Minute).Sub(now))
	e.fake.SeedGenerated(ObjectUsers, cetest.SampleUsers(3, 2500))
	b, err := budget.New(e.s3, e.bucket, 10, budget.WithClock(e.clock.Now))
	if err != nil {
		t.Fatal(err)
	}
	e.cfg.Budget = b
	ex := e.exporter(nil, nil)
	used := func() int {
		u, err := b.Usage(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		return u.Used
	}
	if r := mustRun(t, ex, RunRequest{At: e.clock.Now()}); len(r.Started) != 1 || used() != 1 {
		t.Fatalf("first snapshot: %d started, %d tokens; want 1, 1", len(r.Started), used())
	}
	mustSweep(t, ex)
	e.clock.Add(time.Hour)
	if r := mustRun(t, ex, RunRequest{At: e.clock.Now()}); len(r.Started) != 1 || used() != 3 {
		t.Fatalf("second snapshot: %d started, %d tokens; want 1 charged ceil(2500/1000) = 3", len(r.Started), used())
	}

	// The hour's budget spent (3 of 10 used, 7 taken by a backfill's
	// sweep): the next scheduled event's snapshot is claimed for the
	// sweeps, which start it, under that event's name, as soon as an hour
	// has budget, before any run's days.
	e.clock.Add(time.Hour)
	if g, err := b.Claim(t.Context(), 10); err != nil || g.Tokens != 10 {
		t.Fatalf("spend the hour: %+v, %v", g, err)
	}
	at := e.clock.Now()
	r := mustRun(t, ex, RunRequest{At: at})
	if len(r.Started) != 0 || r.Deferred != 1 {
		t.Fatalf("snapshot over budget: %d started, %d deferred; want 0, 1", len(r.Started), r.Deferred)
	}
	id := SnapshotJobID(ObjectUsers, at)
	if j := e.job(t, id); j.Status != ledger.StatusPending || j.CEJobID != "" {
		t.Fatalf("deferred snapshot %s: %s, CE job %q; want PENDING without a CE job", id, j.Status, j.CEJobID)
	}
	e.clock.Add(2 * time.Minute)
	if s := mustSweep(t, ex); len(s.Started) != 0 || !slices.Contains(s.Postponed, id) {
		t.Fatalf("sweep in the spent hour: started %v, postponed %v; want %s postponed", s.Started, s.Postponed, id)
	}
	e.clock.Add(time.Hour)
	if s := mustSweep(t, ex); !slices.Equal(s.Started, []string{id}) {
		t.Fatalf("sweep in the next hour started %v, want [%s]", s.Started, id)
	}
	if j := e.job(t, id); j.CEJobID == "" {
		t.Errorf("deferred snapshot %s has no CE job after the sweep", id)
	}

	for _, tc := range []struct {
		profiles int64
		want     int
	}{{0, 1}, {1, 1}, {1000, 1}, {1001, 2}, {500_000, 500}} {
		if got := SnapshotCost(tc.profiles); got != tc.want {
			t.Errorf("SnapshotCost(%d) = %d, want %d", tc.profiles, got, tc.want)
		}
	}
}
