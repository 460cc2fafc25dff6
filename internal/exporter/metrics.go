package exporter

import (
	"context"
	"time"

	"github.com/cebulk/cebulk/internal/logging"
)

// The metrics the exporter emits in CloudWatch embedded metric format
// (namespace cebulk, dimension Function = "export", and Object for the
// per-object ones). template.yaml's freshness alarm and dashboard read them.
const (
	// MetricWatermarkAgeHours is how long ago the last exported day of a
	// day object ended: the age of the newest complete day in the lake.
	// A nightly export keeps it between Lag and a day plus Lag.
	MetricWatermarkAgeHours = "WatermarkAgeHours"
	// MetricDaysPending counts the days that ended Lag ago but are not
	// exported yet (from the watermark on).
	MetricDaysPending = "DaysPending"
	// MetricRecordsPublished and MetricBytesPublished are what a collect
	// published (records, and bytes of the gzip part).
	MetricRecordsPublished = "RecordsPublished"
	MetricBytesPublished   = "BytesPublished"
	// MetricBudgetLeft is how many Mixpanel export queries the run or
	// sweep may still start this hour (dimension Function only).
	MetricBudgetLeft = "BudgetLeft"
	// MetricJobsFailed counts jobs that ended FAILED or EXPIRED
	// (dimension Function only).
	MetricJobsFailed = "JobsFailed"
)

// MetricNames lists every metric the exporter emits.
var MetricNames = []string{MetricWatermarkAgeHours, MetricDaysPending, MetricRecordsPublished, MetricBytesPublished, MetricBudgetLeft, MetricJobsFailed}

// Freshness is how far behind the lake is for one day object.
type Freshness struct {
	Object string
	// Next is the watermark: the first day not exported yet.
	Next string
	// Age is how long ago Next began (in Config.Location): the age of the
	// end of the newest complete day.
	Age time.Duration
	// DaysPending counts the days from Next on that ended Config.Lag ago.
	DaysPending int
}

// Freshness returns object's freshness at now; ok is false when it has no
// watermark yet (no scheduled run has happened).
func (e *Exporter) Freshness(ctx context.Context, object string) (f Freshness, ok bool, err error) {
	wm, _, err := e.readWatermark(ctx, object)
	if err != nil || wm == nil {
		return Freshness{}, false, err
	}
	now := e.now()
	date, err := parseDay(wm.Next)
	if err != nil {
		return Freshness{}, false, err
	}
	start, _ := DayBounds(date, e.cfg.Location)
	f = Freshness{Object: object, Next: wm.Next, Age: max(0, now.Sub(start))}
	for d := date; f.DaysPending < maxPendingDays; d = d.AddDate(0, 0, 1) {
		if _, end := DayBounds(d, e.cfg.Location); end.Add(e.cfg.Lag).After(now) {
			break
		}
		f.DaysPending++
	}
	return f, true, nil
}

// maxPendingDays bounds the DaysPending count (ten years).
const maxPendingDays = 3660

// budgetLeft is how many export queries may still start this hour. ok is
// false without a budget, or when it cannot be read (logged).
func (e *Exporter) budgetLeft(ctx context.Context) (left int, ok bool) {
	if e.cfg.Budget == nil {
		return 0, false
	}
	u, err := e.cfg.Budget.Usage(ctx)
	if err != nil {
		e.log.WarnContext(ctx, "budget metric not written", "err", err.Error())
		return 0, false
	}
	return u.Left(), true
}

// emitMetrics writes, at the end of a run, a sweep or a collect, the
// freshness of the given objects (day objects only), the budget left (runs
// and sweeps), and what a collect published. Failing to write a metric is
// logged, never an error.
func (e *Exporter) emitMetrics(ctx context.Context, objects []string, published *CollectResult) {
	now := e.now()
	write := func(object string, values ...logging.Value) {
		dims := []logging.Dimension{{Name: "Function", Value: "export"}}
		if object != "" {
			dims = append(dims, logging.Dimension{Name: "Object", Value: object})
		}
		if err := logging.Metrics(e.cfg.Metrics, dims, values, now); err != nil {
			e.log.WarnContext(ctx, "write metric", "err", err.Error())
		}
	}
	for _, o := range objects {
		if Snapshot(o) {
			continue
		}
		f, ok, err := e.Freshness(ctx, o)
		if err != nil {
			e.log.WarnContext(ctx, "freshness metric not written", "object", o, "err", err.Error())
		}
		if ok {
			write(o, logging.Value{Name: MetricWatermarkAgeHours, Unit: "None", Value: f.Age.Hours()},
				logging.Value{Name: MetricDaysPending, Unit: "Count", Value: float64(f.DaysPending)})
		}
	}
	if published == nil {
		if left, ok := e.budgetLeft(ctx); ok {
			write("", logging.Value{Name: MetricBudgetLeft, Unit: "Count", Value: float64(left)})
		}
		return
	}
	write(published.Object, logging.Value{Name: MetricRecordsPublished, Unit: "Count", Value: float64(published.Records)},
		logging.Value{Name: MetricBytesPublished, Unit: "Bytes", Value: float64(published.Bytes)})
}
