package webhook

import (
	"encoding/json"
	"net/http"
	"testing"
	"time"

	"github.com/cebulk/cebulk/internal/budget"
	"github.com/cebulk/cebulk/internal/exporter"
	"github.com/google/go-cmp/cmp"
)

func TestGetRun(t *testing.T) {
	h := newHarness(t, "")
	run, err := exporter.NewRun("run-abc", "POST /exports", []string{"activities"}, "2026-10-01", "2026-10-11", testNow, time.UTC, exporter.BasisUTC, 0)
	if err != nil {
		t.Fatal(err)
	}
	run.QueriesPerHour = 4
	for i := range 3 {
		run.Days[i].State, run.Days[i].Records = exporter.DayDone, 100
	}
	run.Days[3].State, run.Days[3].Error = exporter.DayFailed, "CE job ended ERROR"
	b, _ := json.Marshal(run)
	h.store.objs[exporter.RunKey("run-abc")] = b
	hour := testNow.UTC().Truncate(time.Hour)
	u, _ := json.Marshal(map[string]any{"hour": hour, "used": 4})
	h.store.objs[budget.Key] = u

	rec := h.do(t, http.MethodGet, "/runs/run-abc", nil, nil)
	if rec.Code != http.StatusOK {
		t.Fatalf("GET /runs/run-abc = %d %s", rec.Code, rec.Body)
	}
	var v exporter.RunView
	if err := json.Unmarshal(rec.Body.Bytes(), &v); err != nil {
		t.Fatal(err)
	}
	want := exporter.RunProgress{Total: 10, Done: 3, Pending: 6, Failed: 1, Records: 300, FailedDays: []string{"export-activities-2026-10-04"}}
	if diff := cmp.Diff(want, v.Progress); diff != "" {
		t.Errorf("progress (-want +got):\n%s", diff)
	}
	// This hour's 4 tokens are spent: 6 days at 4 an hour start by the
	// second hour from now, and end about an hour later.
	if v.StartsBy == nil || !v.StartsBy.Equal(hour.Add(2*time.Hour)) || v.ETA == nil || !v.ETA.Equal(hour.Add(3*time.Hour)) {
		t.Errorf("startsBy %v, eta %v; want %v, %v", v.StartsBy, v.ETA, hour.Add(2*time.Hour), hour.Add(3*time.Hour))
	}
	for _, target := range []string{"/runs/no-such-run", "/runs/..%2Fjobs"} {
		if rec := h.do(t, http.MethodGet, target, nil, nil); rec.Code != http.StatusNotFound {
			t.Errorf("GET %s = %d, want 404", target, rec.Code)
		}
	}
}
