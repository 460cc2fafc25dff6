package cetest

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// Throttle describes a rate limit the emulator imposes on the calls that
// match it, as Mixpanel does (and CE passes through) when a project exceeds
// its 60 queries an hour or its ingestion rate: every matching call is
// answered with Status and CE's error body, is counted, and does nothing
// else (no job is created, no upload is read).
type Throttle struct {
	// Method ("" for any) and Suffix ("" for any path) select the calls,
	// as for FailNext: Suffix is matched against the end of the path after
	// /elements/api-v2 and the optional /hubs/general.
	Method, Suffix string
	// Status is the answer (default 429).
	Status int
	// RetryAfter, when not empty, is sent as the Retry-After header.
	RetryAfter string
	// Calls is how many matching calls are refused; 0 means no count limit.
	Calls int
	// For is how long, on the emulator's clock from the call to Throttle,
	// matching calls are refused; 0 means no time limit. With both Calls
	// and For set the throttle ends at whichever comes first.
	For time.Duration
}

// throttle is an installed Throttle. Guarded by Fake.mu.
type throttle struct {
	Throttle
	until time.Time // zero: no time limit
	left  int       // calls left; only meaningful when Calls > 0
}

// Throttle installs t. It panics when t sets neither Calls nor For (a
// throttle that never ends) or a negative value.
func (f *Fake) Throttle(t Throttle) {
	if t.Calls < 0 || t.For < 0 || (t.Calls == 0 && t.For == 0) {
		panic(fmt.Sprintf("cetest: Throttle(%+v): set Calls or For (positive)", t))
	}
	if t.Status == 0 {
		t.Status = http.StatusTooManyRequests
	}
	t.Method = strings.ToUpper(t.Method)
	f.mu.Lock()
	defer f.mu.Unlock()
	th := &throttle{Throttle: t, left: t.Calls}
	if t.For > 0 {
		th.until = f.now().Add(t.For)
	}
	f.throttles = append(f.throttles, th)
}

// throttledLocked returns the throttle that refuses a call, consuming one
// of its calls, or nil. Expired throttles are dropped.
func (f *Fake) throttledLocked(method, route string) *Throttle {
	now := f.now()
	live := f.throttles[:0]
	var hit *Throttle
	for _, th := range f.throttles {
		if !th.until.IsZero() && !now.Before(th.until) {
			continue
		}
		if hit == nil && (th.Method == "" || th.Method == method) && strings.HasSuffix(route, th.Suffix) {
			t := th.Throttle
			hit = &t
			if th.Calls > 0 {
				th.left--
				if th.left == 0 {
					continue
				}
			}
		}
		live = append(live, th)
	}
	f.throttles = live
	return hit
}

// AddRecords adds records to object (registering it if needed) after those
// it already has, as events that reach Mixpanel late do: the mobile SDKs
// deliver events up to 5 days late and /import writes into any past day, so
// a day exported once may hold more events later. records takes the forms
// Seed takes. Jobs created earlier keep the records they saw.
func (f *Fake) AddRecords(object string, records any) {
	raws, err := seedRecords(records)
	if err != nil {
		panic(fmt.Sprintf("cetest: AddRecords(%q): %v", object, err))
	}
	recs := toRecords(object, raws)
	f.mu.Lock()
	defer f.mu.Unlock()
	old := f.data[object]
	f.data[object] = Generator{Records: func(yield func(Record) bool) {
		stopped := false
		if old.Records != nil {
			old.Records(func(r Record) bool {
				if !yield(r) {
					stopped = true
					return false
				}
				return true
			})
		}
		if stopped {
			return
		}
		for _, r := range recs {
			if !yield(r) {
				return
			}
		}
	}}
}

// toRecords wraps raw records, reading the event time of activities.
func toRecords(object string, raws []json.RawMessage) []Record {
	recs := make([]Record, len(raws))
	for i, raw := range raws {
		recs[i] = Record{JSON: raw}
		if object == "activities" {
			if t, ok := eventTime(raw); ok {
				recs[i].Time = t
			}
		}
	}
	return recs
}

// WallClock returns the "project time" Mixpanel records for an event that
// happened at t in a project whose timezone is loc (projects created before
// 2023): the wall-clock reading in loc, counted in seconds as if it were
// UTC. Around a daylight saving change two instants can share a reading.
func WallClock(t time.Time, loc *time.Location) int64 {
	y, m, d := t.In(loc).Date()
	h, mi, s := t.In(loc).Clock()
	return time.Date(y, m, d, h, mi, s, 0, time.UTC).Unix()
}

// dayOf returns the calendar date of t in loc as midnight UTC.
func dayOf(t time.Time, loc *time.Location) time.Time {
	y, m, d := t.In(loc).Date()
	return time.Date(y, m, d, 0, 0, 0, 0, time.UTC)
}

// inDays reports whether t lies in the days the window [from, to) selects
// under Options.WholeDays: Mixpanel's from_date and to_date, both inclusive,
// are the UTC dates of from and of the last instant before to, and an
// event's date is its date on the project's clock (loc).
func inDays(t, from, to time.Time, loc *time.Location) bool {
	day := dayOf(t, loc)
	if !from.IsZero() && day.Before(dayOf(from, time.UTC)) {
		return false
	}
	if !to.IsZero() && day.After(dayOf(to.Add(-time.Nanosecond), time.UTC)) {
		return false
	}
	return true
}

// projectTimeJSON returns raw with properties.time replaced by the
// wall-clock seconds of t in loc, keeping every other field.
func projectTimeJSON(raw json.RawMessage, t time.Time, loc *time.Location) json.RawMessage {
	var v map[string]json.RawMessage
	if json.Unmarshal(raw, &v) != nil {
		return raw
	}
	var props map[string]json.RawMessage
	if json.Unmarshal(v["properties"], &props) != nil {
		return raw
	}
	props["time"] = json.RawMessage(strconv.FormatInt(WallClock(t, loc), 10))
	p, err := json.Marshal(props)
	if err != nil {
		return raw
	}
	v["properties"] = p
	out, err := json.Marshal(v)
	if err != nil {
		return raw
	}
	return bytes.TrimSpace(out)
}

// queryCost is what a download job costs the project's query budget
// inside CE: one export query for activities, and about one Engage query
// per page of 1000 profiles for users (at least one).
func queryCost(object string, count int64) int {
	if object != "users" {
		return 1
	}
	return max(1, int(math.Ceil(float64(count)/1000)))
}

// QueryCost returns the Mixpanel queries spent by the download jobs created
// in [from, to) on the emulator's clock (zero bounds are open): Job.QueryCost
// summed. Tests use it to check that a deployment keeps to its budget.
func (f *Fake) QueryCost(from, to time.Time) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	n := 0
	for _, j := range f.order {
		if j.direction != DirectionDownload {
			continue
		}
		if (!from.IsZero() && j.created.Before(from)) || (!to.IsZero() && !j.created.Before(to)) {
			continue
		}
		n += queryCost(j.object, j.count)
	}
	return n
}
