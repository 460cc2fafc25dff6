package exporter

import (
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/cebulk/cebulk/internal/cetest"
)

// metricValues returns, from the EMF lines, the values of metric name by
// the Object dimension, in order.
func metricValues(t *testing.T, e *env, name string) map[string][]float64 {
	t.Helper()
	out := map[string][]float64{}
	for _, m := range e.metrics.lines(t) {
		v, ok := m[name].(float64)
		if !ok {
			continue
		}
		if m["Function"] != "export" {
			t.Errorf("metric line %v: Function = %v, want export", m, m["Function"])
		}
		obj, _ := m["Object"].(string)
		out[obj] = append(out[obj], v)
	}
	return out
}

// TestFreshnessMetrics follows the freshness metrics through a run (three
// days pending, the watermark three days and some hours old), the sweep
// that publishes the days (records and bytes per collect, then a fresh
// watermark), and a day later.
func TestFreshnessMetrics(t *testing.T) {
	e := newEnv(t, cetest.Options{}, Config{})
	byDay := seedActivities(e.fake, 600, dayStart(e.day(-4)), dayStart(e.day(0)))
	ex := e.exporter(nil, nil)
	now := e.clock.Now()
	// ageHours is the metric's value for a watermark days before today:
	// computed from durations as the exporter does, so floats compare exactly.
	sinceMidnight := now.Sub(dayStart(e.day(0)))
	ageHours := func(days int) float64 { return (time.Duration(days)*24*time.Hour + sinceMidnight).Hours() }

	mustRun(t, ex, RunRequest{})
	if diff := cmp.Diff(map[string][]float64{"activities": {ageHours(3)}}, metricValues(t, e, MetricWatermarkAgeHours)); diff != "" {
		t.Errorf("watermark age after the run (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(map[string][]float64{"activities": {3}}, metricValues(t, e, MetricDaysPending)); diff != "" {
		t.Errorf("days pending after the run (-want +got):\n%s", diff)
	}

	sweep := mustSweep(t, ex)
	var wantRecords, wantBytes []float64
	for _, c := range sweep.Collected {
		wantRecords = append(wantRecords, float64(len(byDay[c.Partition[len("dt="):]])))
		wantBytes = append(wantBytes, float64(c.Bytes))
	}
	if len(wantRecords) != 3 {
		t.Fatalf("sweep collected %d jobs, want 3", len(wantRecords))
	}
	if diff := cmp.Diff(map[string][]float64{"activities": wantRecords}, metricValues(t, e, MetricRecordsPublished)); diff != "" {
		t.Errorf("records published (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(map[string][]float64{"activities": wantBytes}, metricValues(t, e, MetricBytesPublished)); diff != "" {
		t.Errorf("bytes published (-want +got):\n%s", diff)
	}
	// After each collect (the watermark moves a day each) and the sweep.
	want := []float64{ageHours(3), ageHours(2), ageHours(1), ageHours(0), ageHours(0)}
	if diff := cmp.Diff(map[string][]float64{"activities": want}, metricValues(t, e, MetricWatermarkAgeHours)); diff != "" {
		t.Errorf("watermark age after the sweep (-want +got):\n%s", diff)
	}

	e.clock.Add(24 * time.Hour)
	mustSweep(t, ex)
	ages := metricValues(t, e, MetricWatermarkAgeHours)["activities"]
	pending := metricValues(t, e, MetricDaysPending)["activities"]
	if got := ages[len(ages)-1]; got != ageHours(1) {
		t.Errorf("watermark age a day later, nothing exported = %v, want %v", got, ageHours(1))
	}
	if got := pending[len(pending)-1]; got != 1 {
		t.Errorf("days pending a day later = %v, want 1", got)
	}
	if got := metricValues(t, e, MetricBudgetLeft); len(got) != 0 {
		t.Errorf("BudgetLeft emitted %v with no budget to read", got)
	}
}
