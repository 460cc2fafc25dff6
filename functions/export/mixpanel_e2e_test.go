package main

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/cebulk/cebulk/internal/awstest"
	"github.com/cebulk/cebulk/internal/budget"
	"github.com/cebulk/cebulk/internal/cetest"
	"github.com/cebulk/cebulk/internal/exporter"
	"github.com/cebulk/cebulk/internal/lambdatest"
	"github.com/cebulk/cebulk/internal/ledger"
	"github.com/cebulk/cebulk/internal/mptest"
)

// mpE2E is the ExportFunction with BACKEND=mixpanel against the Mixpanel
// emulator (the CE emulator stays up, for a stack that switches).
type mpE2E struct {
	*e2e
	mp  *mptest.Fake
	gen mptest.Generator // the project's events, set by events
}

// startMixpanelE2E starts the function with BACKEND=mixpanel and
// MIXPANEL_BASE_URL at a Mixpanel emulator configured by mpOpts, env on
// top. The stack's one secret holds both credential sets, CE's and the
// service account's, as a stack that switches backends has it.
func startMixpanelE2E(t *testing.T, env map[string]string, mpOpts mptest.Options) *mpE2E {
	t.Helper()
	srv, fake := mptest.NewServer(t, mpOpts)
	o := fake.Options()
	secret := fmt.Sprintf(`{"userSecret":%q,"organizationSecret":%q,"elementToken":%q,`+
		`"serviceAccountUser":%q,"serviceAccountSecret":%q,"projectId":%q,"projectToken":%q}`,
		cetest.DefaultUserSecret, cetest.DefaultOrgSecret, cetest.DefaultElementToken,
		o.Username, o.Secret, o.ProjectID, o.Token)
	x := newE2E(t, lambdatest.StackOptions{}, cetest.Options{}, secret)
	x.vars["BACKEND"] = "mixpanel"
	x.vars["MIXPANEL_BASE_URL"] = srv.URL
	x.start(t, env, 60*time.Second)
	return &mpE2E{e2e: x, mp: fake}
}

// events makes the project hold perDay events on each UTC day of the last
// week (today excluded).
func (x *mpE2E) events(perDay int) {
	x.gen = mptest.SampleEvents(17, perDay, 400, x.today.AddDate(0, 0, -8), x.today)
	x.mp.SetGenerator(x.gen)
}

// served returns the lines the emulator's export serves for day, asked of
// a second emulator with the same events (asking the stack's own would add
// to the requests the tests count).
func (x *mpE2E) served(t *testing.T, day string) []string {
	t.Helper()
	ref := mptest.NewFake(mptest.Options{ExportPerHour: -1})
	ref.SetGenerator(x.gen)
	q := url.Values{"project_id": {mptest.DefaultProjectID}, "from_date": {day}, "to_date": {day}}
	req := httptest.NewRequest(http.MethodGet, "/api/2.0/export?"+q.Encode(), nil)
	req.SetBasicAuth(mptest.DefaultUsername, mptest.DefaultSecret)
	rec := httptest.NewRecorder()
	ref.ServeHTTP(rec, req)
	if rec.Code != http.StatusOK || rec.Body.Len() == 0 {
		t.Fatalf("reference export of %s: %d %s", day, rec.Code, rec.Body)
	}
	return strings.Split(strings.TrimSuffix(rec.Body.String(), "\n"), "\n")
}

// checkDay checks that day's partition holds every event the project has
// on that day exactly once (line for line what the export serves, and by
// $insert_id against the generator itself), published by backend
// "mixpanel" without records outside the window.
func (x *mpE2E) checkDay(t *testing.T, day string) exporter.Manifest {
	t.Helper()
	m := x.checkPartition(t, "activities", "dt="+day, x.served(t, day))
	if m.Backend != "mixpanel" || m.OutOfWindow != 0 || !strings.HasPrefix(m.CEJobID, "mp-activities-") {
		t.Errorf("manifest of %s: backend %q, outOfWindow %d, job %q; want mixpanel, 0, an mp- job", day, m.Backend, m.OutOfWindow, m.CEJobID)
	}
	d, _ := time.Parse(time.DateOnly, day)
	var want []string
	x.gen(d, d.AddDate(0, 0, 1), func(ev mptest.Event) bool { want = append(want, ev.InsertID); return true })
	_, _, lines := x.readPartition(t, "activities", "dt="+day)
	var got []string
	for _, l := range lines {
		var rec struct {
			Properties struct {
				InsertID string `json:"$insert_id"`
			} `json:"properties"`
		}
		if err := json.Unmarshal([]byte(l), &rec); err != nil {
			t.Fatalf("record of %s: %v: %s", day, err, l)
		}
		got = append(got, rec.Properties.InsertID)
	}
	slices.Sort(want)
	slices.Sort(got)
	if len(want) == 0 || len(slices.Compact(slices.Clone(want))) != len(want) {
		t.Fatalf("generator of %s: %d events, insert ids not distinct", day, len(want))
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("insert ids of %s (-generated +exported):\n%s", day, diff)
	}
	return m
}

// exports returns the statuses of the export requests by day, checking
// that each asked for exactly one day (from_date = to_date).
func (x *mpE2E) exports(t *testing.T) map[string][]int {
	t.Helper()
	out := map[string][]int{}
	for _, r := range x.mp.Requests(mptest.RouteExport) {
		from, to := r.Query.Get("from_date"), r.Query.Get("to_date")
		if from != to {
			t.Errorf("export of %s to %s: want one day per export", from, to)
		}
		out[from] = append(out[from], r.Status)
	}
	return out
}

// checkExportedOnce checks that Mixpanel served exactly one export of each
// of days, and none of any other day. Refusals for its limit of 3 exports a
// second (429, nothing served) may come before it: the function's
// continuations collect one day after another, faster than that.
func (x *mpE2E) checkExportedOnce(t *testing.T, days ...string) {
	t.Helper()
	got := x.exports(t)
	throttled := 0
	for d, statuses := range got {
		served := 0
		for _, st := range statuses {
			switch st {
			case http.StatusOK:
				served++
			case http.StatusTooManyRequests:
				throttled++
			default:
				t.Errorf("export of %s answered %d", d, st)
			}
		}
		if served != 1 || !slices.Contains(days, d) {
			t.Errorf("day %s exported %d times (%v), want once if among %v", d, served, statuses, days)
		}
	}
	for _, d := range days {
		if _, ok := got[d]; !ok {
			t.Errorf("day %s was never exported", d)
		}
	}
	if throttled > 0 {
		t.Logf("%d exports were refused for the rate limit and retried", throttled)
	}
}

// daysAgo is the UTC day n days before today.
func daysAgo(n int) string { return time.Now().UTC().AddDate(0, 0, -n).Format(time.DateOnly) }

// collects waits for the collects the function queued for itself and
// returns the job ids they collected; every one must have succeeded.
func (x *mpE2E) collects(t *testing.T) []string {
	t.Helper()
	before := len(x.invokeAPI.Records())
	waitAsync(t, x.invokeAPI)
	var ids []string
	for _, r := range x.invokeAPI.Records()[before:] {
		var p struct{ Action, JobID string }
		if err := json.Unmarshal(r.Payload, &p); err != nil || p.Action != "collect" {
			t.Errorf("queued invocation %s, want a collect", r.Payload)
		}
		if r.Failed() {
			t.Errorf("collect %s failed: %v %v", p.JobID, r.Err, r.Result.Error)
		}
		ids = append(ids, p.JobID)
	}
	return ids
}

func (x *mpE2E) checkDone(t *testing.T, id string, attempts int) *ledger.Job {
	t.Helper()
	j := x.job(t, id)
	if j.Status != ledger.StatusDone || j.Attempts != attempts {
		t.Errorf("job %s: %s after %d attempts (%s), want DONE after %d", id, j.Status, j.Attempts, j.LastError, attempts)
	}
	return j
}

func (x *mpE2E) watermark(t *testing.T) string {
	t.Helper()
	b, ok := x.read(t, "state/watermarks/activities.json")
	if !ok {
		return ""
	}
	var w exporter.Watermark
	if err := json.Unmarshal(b, &w); err != nil {
		t.Fatalf("watermark %s: %v", b, err)
	}
	return w.Next
}

func (x *mpE2E) checkNoSecrets(t *testing.T) {
	t.Helper()
	logs := x.fn.Logs()
	for _, s := range []string{mptest.DefaultSecret, mptest.DefaultToken, cetest.DefaultUserSecret, cetest.DefaultOrgSecret} {
		if strings.Contains(logs, s) {
			t.Errorf("the function's logs hold a secret")
		}
	}
}

// A three-day backfill with a users snapshot, then the nightly run: each
// day is exported once (one export of that one day), lands in its
// partition exactly once, and the snapshot holds every profile once; the
// continuations the function queues collect everything without a sweep,
// the budget is charged, the run and the ledger end DONE and the nightly
// run neither exports a backfilled day again nor takes a second snapshot
// of the same hour. (The nightly look-back, which exports finished days
// again on purpose, is off.)
func TestE2EMixpanelBackfillAndSnapshot(t *testing.T) {
	x := startMixpanelE2E(t, map[string]string{"EXPORT_OBJECTS": "activities,users", "EXPORT_START": daysAgo(5), "EXPORT_LOOKBACK": "0d"}, mptest.Options{})
	x.events(1500)
	const profiles = 2300 // three engage pages
	x.mp.SeedProfiles(mptest.SampleProfiles(5, profiles))
	hour := time.Now().UTC().Truncate(time.Hour)
	at := x.today.Add(2 * time.Hour) // names the snapshot, in the backfill and the nightly event alike
	snapID := exporter.SnapshotJobID("users", at)
	days := []string{x.day(-5), x.day(-4), x.day(-3)}

	run := x.invoke(t, map[string]any{"action": "run", "objects": []string{"activities", "users"},
		"from": days[0], "to": x.day(-2), "time": at.Format(time.RFC3339), "by": "e2e"})
	var want []string
	for _, d := range days {
		want = append(want, exporter.DayJobID("activities", d))
	}
	want = append(want, snapID)
	if diff := cmp.Diff(want, startedIDs(run.Run)); diff != "" {
		t.Fatalf("backfill started (-want +got):\n%s", diff)
	}
	var snapPartition string
	for _, s := range run.Run.Started {
		if !strings.HasPrefix(s.CEJobID, "mp-"+s.Object+"-") || s.Error != "" {
			t.Errorf("started %+v, want a Mixpanel job", s)
		}
		if s.Object == "users" {
			snapPartition = s.Partition
		}
	}
	if diff := cmp.Diff(want, x.collects(t)); diff != "" {
		t.Errorf("collects queued by the run (-want +got):\n%s", diff)
	}
	if s := x.invoke(t, testdata(t, "sweep.json")); len(s.Sweep.Collected) != 0 || len(s.Sweep.Started) != 0 {
		t.Errorf("sweep after the continuations = %+v, want nothing left to collect or start", s.Sweep)
	}

	for _, d := range days {
		x.checkDay(t, d)
	}
	m, _, lines := x.readPartition(t, "users", snapPartition)
	if m.Backend != "mixpanel" || m.Records != profiles || len(lines) != profiles {
		t.Errorf("snapshot manifest: backend %q, %d records, %d lines; want mixpanel, %d", m.Backend, m.Records, len(lines), profiles)
	}
	got := map[string]map[string]any{}
	for _, l := range lines {
		var p struct {
			ID    string         `json:"$distinct_id"`
			Props map[string]any `json:"$properties"`
		}
		if err := json.Unmarshal([]byte(l), &p); err != nil {
			t.Fatalf("profile line: %v: %s", err, l)
		}
		if _, dup := got[p.ID]; dup {
			t.Errorf("profile %s exported twice", p.ID)
		}
		got[p.ID] = p.Props
	}
	if diff := cmp.Diff(x.mp.Profiles(), got); diff != "" {
		t.Errorf("snapshot profiles (-project +exported):\n%s", diff)
	}
	for _, id := range want {
		x.checkDone(t, id, 1)
	}
	r, _, err := exporter.ReadRun(t.Context(), x.store, x.bucket, run.Run.RunID)
	if err != nil {
		t.Fatal(err)
	}
	if r.Status != exporter.RunDone || r.Progress().Done != len(days) {
		t.Errorf("run %s: %s, %+v; want DONE with %d days", r.ID, r.Status, r.Progress(), len(days))
	}
	if wm := x.watermark(t); wm != "" {
		t.Errorf("the backfill wrote a watermark (next %s)", wm)
	}

	// The nightly run of the same hour: the watermark starts at the
	// backfill's first day and moves over the three DONE days; only the
	// day after them is exported, and the hour's snapshot exists.
	night := x.invoke(t, scheduled(t, at))
	if diff := cmp.Diff([]string{exporter.DayJobID("activities", x.day(-2))}, startedIDs(night.Run)); diff != "" {
		t.Errorf("nightly run started (-want +got):\n%s", diff)
	}
	if !slices.Contains(night.Run.Skipped, snapID) {
		t.Errorf("nightly run skipped %v, want the snapshot %s among them", night.Run.Skipped, snapID)
	}
	x.collects(t)
	x.checkDay(t, x.day(-2))
	x.checkDone(t, exporter.DayJobID("activities", x.day(-2)), 1)
	if wm := x.watermark(t); wm != x.day(-1) {
		t.Errorf("watermark next = %q, want %s", wm, x.day(-1))
	}

	// What Mixpanel was asked: one export per day, one engage query per
	// page of the one snapshot.
	x.checkExportedOnce(t, append(days, x.day(-2))...)
	var pages []string
	for _, r := range x.mp.Requests(mptest.RouteEngageQuery) {
		pages = append(pages, fmt.Sprint(r.Status))
	}
	if diff := cmp.Diff([]string{"200", "200", "200"}, pages); diff != "" {
		t.Errorf("engage queries (-want +got):\n%s", diff)
	}

	// The budget paid one token per day and one for the first snapshot.
	b, ok := x.read(t, budget.Key)
	var used struct {
		Hour time.Time `json:"hour"`
		Used int       `json:"used"`
	}
	if !ok || json.Unmarshal(b, &used) != nil {
		t.Fatalf("budget %s: %s", budget.Key, b)
	}
	switch now := time.Now().UTC().Truncate(time.Hour); {
	case !now.Equal(hour):
		t.Logf("the clock hour changed during the test: budget %s not checked", b)
	case !used.Hour.Equal(hour) || used.Used != len(days)+2:
		t.Errorf("budget = %s, want %d tokens used in %s", b, len(days)+2, hour)
	}
	x.checkNoSecrets(t)
}

// A stack exporting through CE switches to BACKEND=mixpanel on the same
// bucket: the Mixpanel nights continue from CE's watermark, the day whose
// CE job was in flight at the switch is exported (once) by Mixpanel, and
// no day is exported twice or skipped; each manifest names its backend.
// Without the look-back the days CE exported stay CE's; with it (on for the
// Mixpanel nights only, to keep CE's nights simple) the first Mixpanel
// night exports the look-back days again, once, through Mixpanel, and
// their new manifests name the CE revision they replaced.
func TestE2ESwitchCEToMixpanel(t *testing.T) {
	t.Run("no look-back", func(t *testing.T) { testSwitchCEToMixpanel(t, 0) })
	t.Run("look-back 2d", func(t *testing.T) { testSwitchCEToMixpanel(t, 2) })
}

func testSwitchCEToMixpanel(t *testing.T, lookback int) {
	env := func(backend, lag string) map[string]string {
		return map[string]string{"BACKEND": backend, "EXPORT_START": daysAgo(6), "EXPORT_LAG": lag, "EXPORT_LOOKBACK": "0d"}
	}
	x := startMixpanelE2E(t, env("ce", "96h"), mptest.Options{})
	ceByDay := x.seed(2000, x.today.AddDate(0, 0, -7), x.today.AddDate(0, 0, -1))
	x.events(1200)
	id := func(offset int) string { return exporter.DayJobID("activities", x.day(offset)) }
	// Each night is a schedule event of its own (past) hour; the lag
	// shrinking by a day stands for a day passing.
	night := func(n int) map[string]any { return scheduled(t, x.today.Add(time.Duration(n-5)*time.Hour)) }

	// Night 1 on CE: days -6 and -5, collected by the sweep.
	n1 := x.invoke(t, night(1))
	if diff := cmp.Diff([]string{id(-6), id(-5)}, startedIDs(n1.Run)); diff != "" {
		t.Fatalf("CE night 1 started (-want +got):\n%s", diff)
	}
	if s := x.invoke(t, testdata(t, "sweep.json")); len(s.Sweep.Collected) != 2 {
		t.Fatalf("CE sweep = %+v, want two collects", s.Sweep)
	}
	ceJob := map[int]string{-6: x.job(t, id(-6)).CEJobID, -5: x.job(t, id(-5)).CEJobID}
	// Night 2 on CE: day -4's CE job starts, and the stack is switched
	// before any sweep collects it.
	x.start(t, env("ce", "72h"), 60*time.Second)
	if n2 := x.invoke(t, night(2)); !slices.Equal(startedIDs(n2.Run), []string{id(-4)}) {
		t.Fatalf("CE night 2 started %v, want %s", startedIDs(n2.Run), id(-4))
	}
	if wm := x.watermark(t); wm != x.day(-4) {
		t.Fatalf("watermark at the switch = %q, want %s", wm, x.day(-4))
	}

	// Night 3 on Mixpanel: the new days, then the look-back's.
	mpEnv := env("mixpanel", "24h")
	mpEnv["EXPORT_LOOKBACK"] = fmt.Sprintf("%dd", lookback)
	x.start(t, mpEnv, 60*time.Second)
	n3 := x.invoke(t, night(3))
	wantStarted := []string{id(-3), id(-2)}
	ceDone, mpDays := []int{-6, -5}, []int{-4, -3, -2}
	if lookback > 0 {
		wantStarted = append(wantStarted, id(-6), id(-5))
		ceDone, mpDays = nil, []int{-6, -5, -4, -3, -2}
	}
	if diff := cmp.Diff(wantStarted, startedIDs(n3.Run)); diff != "" {
		t.Errorf("Mixpanel night started (-want +got):\n%s", diff)
	}
	if n3.Run.Watermarks["activities"] != x.day(-4) {
		t.Errorf("Mixpanel night: watermarks %v, want next %s (in flight)", n3.Run.Watermarks, x.day(-4))
	}
	x.collects(t)
	// The sweep finds day -4 on a CE job the Mixpanel backend does not know
	// and starts it again through Mixpanel.
	s := x.invoke(t, testdata(t, "sweep.json"))
	if !slices.Equal(s.Sweep.Restarted, []string{id(-4)}) {
		t.Errorf("sweep after the switch = %+v, want %s restarted", s.Sweep, id(-4))
	}
	if diff := cmp.Diff([]string{id(-4)}, x.collects(t)); diff != "" {
		t.Errorf("collects queued by the sweep (-want +got):\n%s", diff)
	}

	for _, d := range ceDone {
		if m := x.checkPartition(t, "activities", "dt="+x.day(d), ceByDay[x.day(d)]); m.Backend != "ce" || m.Revision != 1 {
			t.Errorf("manifest of %s: backend %q, revision %d; want ce, 1", x.day(d), m.Backend, m.Revision)
		}
		x.checkDone(t, id(d), 1)
	}
	for _, d := range mpDays {
		m := x.checkDay(t, x.day(d))
		if ce, ok := ceJob[d]; ok && (m.Revision != 2 || m.Replaced == nil || m.Replaced.CEJobID != ce || m.Replaced.Records != int64(len(ceByDay[x.day(d)]))) {
			t.Errorf("manifest of %s: revision %d replacing %+v; want 2 replacing CE's job %s", x.day(d), m.Revision, m.Replaced, ce)
		}
		attempts := 1
		if d == -4 {
			attempts = 2 // its CE job, then Mixpanel's
		}
		x.checkDone(t, id(d), attempts)
	}
	if wm := x.watermark(t); wm != x.day(-1) {
		t.Errorf("watermark next = %q, want %s", wm, x.day(-1))
	}
	if lookback == 0 {
		if again := x.invoke(t, night(4)); len(again.Run.Started) != 0 {
			t.Errorf("another Mixpanel night started %v", startedIDs(again.Run))
		}
	}

	// Which backend was asked for which day.
	var ceDays []string
	for _, j := range x.fake.Jobs() {
		ceDays = append(ceDays, j.From.UTC().Format(time.DateOnly))
	}
	if diff := cmp.Diff([]string{x.day(-6), x.day(-5), x.day(-4)}, ceDays); diff != "" {
		t.Errorf("CE jobs by day (-want +got):\n%s", diff)
	}
	if got := x.fake.Requests("GET /activities"); got != 2 {
		t.Errorf("CE downloads = %d, want 2 (day %s's CE job is never downloaded)", got, x.day(-4))
	}
	var want []string
	for _, d := range mpDays {
		want = append(want, x.day(d))
	}
	x.checkExportedOnce(t, want...)
	x.checkNoSecrets(t)
}

// An export cut mid-stream, and a 429 from the export: the day is still
// published exactly once.
func TestE2EMixpanelExportFaults(t *testing.T) {
	t.Run("cut mid-stream", func(t *testing.T) {
		x := startMixpanelE2E(t, nil, mptest.Options{})
		x.events(1500)
		d, id := x.day(-2), exporter.DayJobID("activities", x.day(-2))
		x.mp.CutNextExport(64 << 10)
		if run := x.invoke(t, testdata(t, "run.json")); !slices.Equal(startedIDs(run.Run), []string{id}) {
			t.Fatalf("run started %v", startedIDs(run.Run))
		}
		x.collects(t) // succeeds: the failed attempt is in the ledger
		if j := x.job(t, id); j.Status != ledger.StatusPending || j.Attempts != 2 || !strings.Contains(j.LastError, "unexpected EOF") {
			t.Errorf("job after the cut: %s, attempt %d, %q; want PENDING, 2, the cut export", j.Status, j.Attempts, j.LastError)
		}
		if keys := awstest.Keys(t, x.bucket, "exports/"); len(keys) != 0 {
			t.Errorf("a cut export left %v", keys)
		}
		s := x.invoke(t, testdata(t, "sweep.json"))
		if len(s.Sweep.Collected) != 1 || s.Sweep.Collected[0].Outcome != exporter.OutcomeCollected {
			t.Fatalf("sweep = %+v, want the day collected", s.Sweep)
		}
		x.checkDay(t, d)
		x.checkDone(t, id, 2)
		// The cut export answered 200 before it broke off.
		if diff := cmp.Diff(map[string][]int{d: {200, 200}}, x.exports(t)); diff != "" {
			t.Errorf("exports (-want +got):\n%s", diff)
		}
	})
	t.Run("429", func(t *testing.T) {
		x := startMixpanelE2E(t, nil, mptest.Options{})
		x.events(1500)
		d, id := x.day(-2), exporter.DayJobID("activities", x.day(-2))
		x.mp.FailNext(mptest.RouteExport, http.StatusTooManyRequests, "1")
		if run := x.invoke(t, testdata(t, "run.json")); !slices.Equal(startedIDs(run.Run), []string{id}) {
			t.Fatalf("run started %v", startedIDs(run.Run))
		}
		x.collects(t)
		x.checkDay(t, d)
		x.checkDone(t, id, 1) // the client waited and asked again
		if diff := cmp.Diff(map[string][]int{d: {429, 200}}, x.exports(t)); diff != "" {
			t.Errorf("exports (-want +got):\n%s", diff)
		}
	})
}
