package mptest

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"slices"
	"sort"
	"strconv"
	"time"
)

// Event is one stored or generated event. The export writes it as
//
//	{"event":Name,"properties":{"time":…,"distinct_id":DistinctID,
//	 "$insert_id":InsertID,"mp_processing_time_ms":Processed,…Props}}
type Event struct {
	Name       string
	Time       time.Time // the event's instant (millisecond precision)
	DistinctID string
	InsertID   string
	// Processed is mp_processing_time_ms: when Mixpanel ingested the event.
	Processed int64
	// Props is a JSON object of the other properties ("{}" or nil for
	// none). A Generator may reuse its backing array after yield returns.
	Props json.RawMessage
}

// A Generator yields the events whose Time is in [from, to), in time order,
// lazily: a generated day can be far larger than memory. It must yield the
// same events on every call.
type Generator func(from, to time.Time, yield func(Event) bool)

// SetGenerator makes g the source of the project's historical events, served
// by the export beside the events imported or added. nil removes it.
func (f *Fake) SetGenerator(g Generator) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.gen = g
}

// SampleEvents returns a deterministic Generator of perDay events in each
// UTC day of [first, end), spread evenly over the day at one-second
// resolution (none outside it). Each day is generated on its own from
// (seed, day), so a query of one day costs that day only. distinct_id is
// "user-<k>" with k < users (default 500), matching SampleProfiles(seed,
// users); $insert_id is 32 hex digits; every event passes /import's rules.
func SampleEvents(seed int64, perDay, users int, first, end time.Time) Generator {
	if users <= 0 {
		users = 500
	}
	first = first.UTC().Truncate(24 * time.Hour)
	return func(from, to time.Time, yield func(Event) bool) {
		if perDay <= 0 {
			return
		}
		day := from.UTC().Truncate(24 * time.Hour)
		if day.Before(first) {
			day = first
		}
		buf := make([]byte, 0, 512)
		for ; day.Before(end) && day.Before(to); day = day.Add(24 * time.Hour) {
			n := day.Unix() / 86400
			rng := rand.New(rand.NewPCG(uint64(seed), uint64(n)))
			for i := range perDay {
				at := day.Add(time.Duration(int64(i)*86400/int64(perDay)) * time.Second)
				var ev Event
				ev, buf = sampleEvent(rng, at, users, buf[:0])
				if at.Before(from) || !at.Before(to) || !at.Before(end) {
					continue
				}
				if !yield(ev) {
					return
				}
			}
		}
	}
}

var (
	sampleNames   = []string{"Page View", "Page View", "Page View", "Search", "Sign Up", "Purchase", "Login", "Logout"}
	samplePages   = []string{"/", "/pricing", "/docs", "/blog", "/account"}
	sampleBrowser = []string{"Chrome", "Safari", "Firefox", "Edge"}
	samplePlans   = []string{"free", "free", "pro", "enterprise"}
)

// sampleEvent draws one event; its Props live in buf.
func sampleEvent(rng *rand.Rand, at time.Time, users int, buf []byte) (Event, []byte) {
	name := sampleNames[rng.IntN(len(sampleNames))]
	user := rng.IntN(users)
	id := fmt.Sprintf("%016x%016x", rng.Uint64(), rng.Uint64())
	buf = append(buf, `{"$browser":`...)
	buf = strconv.AppendQuote(buf, sampleBrowser[rng.IntN(len(sampleBrowser))])
	buf = append(buf, `,"mp_lib":"web","plan":`...)
	buf = strconv.AppendQuote(buf, samplePlans[user%len(samplePlans)])
	switch name {
	case "Page View":
		buf = append(buf, `,"$current_url":"https://app.example.com`...)
		buf = append(buf, samplePages[rng.IntN(len(samplePages))]...)
		buf = append(buf, '"')
	case "Purchase":
		buf = append(buf, `,"amount":`...)
		buf = strconv.AppendInt(buf, int64(5+rng.IntN(200)), 10)
	}
	buf = append(buf, '}')
	return Event{
		Name: name, Time: at, DistinctID: "user-" + strconv.Itoa(user), InsertID: id,
		Processed: at.UnixMilli() + 500 + int64(rng.IntN(4000)), Props: buf,
	}, buf
}

// appendLine appends ev as one export line (with its newline). sec is the
// exported time: seconds of the project's clock, or milliseconds with
// time_in_ms.
func appendLine(b []byte, ev *Event, t int64) []byte {
	b = append(b, `{"event":`...)
	b = appendString(b, ev.Name)
	b = append(b, `,"properties":{"time":`...)
	b = strconv.AppendInt(b, t, 10)
	b = append(b, `,"distinct_id":`...)
	b = appendString(b, ev.DistinctID)
	b = append(b, `,"$insert_id":`...)
	b = appendString(b, ev.InsertID)
	b = append(b, `,"mp_processing_time_ms":`...)
	b = strconv.AppendInt(b, ev.Processed, 10)
	if p := bytes.TrimSpace(ev.Props); len(p) > 2 {
		b = append(b, ',')
		b = append(b, p[1:len(p)-1]...)
	}
	return append(b, "}}\n"...)
}

func appendString(b []byte, s string) []byte {
	q, _ := json.Marshal(s)
	return append(b, q...)
}

// dedupeKey is what Mixpanel deduplicates on: (event, distinct_id, time,
// $insert_id).
type dedupeKey struct {
	name, distinctID, insertID string
	ms                         int64
}

// eventStore holds imported and added events, deduplicated.
type eventStore struct {
	byKey  map[dedupeKey]*Event
	sorted []*Event // by Time; rebuilt when dirty
	dirty  bool
}

func newEventStore() eventStore { return eventStore{byKey: map[dedupeKey]*Event{}} }

// put stores ev and reports whether it replaced an identical one.
func (s *eventStore) put(ev Event) bool {
	k := dedupeKey{ev.Name, ev.DistinctID, ev.InsertID, ev.Time.UnixMilli()}
	if old, ok := s.byKey[k]; ok {
		*old = ev
		return true
	}
	p := &ev
	s.byKey[k] = p
	s.sorted = append(s.sorted, p)
	s.dirty = true
	return false
}

// between returns copies of the stored events in [from, to), by time.
func (s *eventStore) between(from, to time.Time) []Event {
	if s.dirty {
		sort.SliceStable(s.sorted, func(i, j int) bool { return s.sorted[i].Time.Before(s.sorted[j].Time) })
		s.dirty = false
	}
	i := sort.Search(len(s.sorted), func(i int) bool { return !s.sorted[i].Time.Before(from) })
	var out []Event
	for ; i < len(s.sorted) && s.sorted[i].Time.Before(to); i++ {
		out = append(out, *s.sorted[i])
	}
	return out
}

// AddEvents stores events as if they had been ingested now, without
// /import's checks (but deduplicated): late events of past days, as mobile
// SDKs deliver them. events is a JSON array or JSON lines of
// {"event", "properties": {"time" (UTC seconds or ms), "distinct_id",
// "$insert_id", ...}}. It panics on malformed input: it is a test-setup
// helper.
func (f *Fake) AddEvents(events string) {
	recs, err := splitRecords([]byte(events))
	if err != nil {
		panic(fmt.Sprintf("mptest: AddEvents: %v", err))
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	for i, raw := range recs {
		ev, err := parseStored(raw, f.now())
		if err != nil {
			panic(fmt.Sprintf("mptest: AddEvents: event %d: %v", i, err))
		}
		f.store.put(ev)
	}
}

// parseStored reads a record in /import's shape without validating it.
func parseStored(raw []byte, now time.Time) (Event, error) {
	var rec struct {
		Event      string                     `json:"event"`
		Properties map[string]json.RawMessage `json:"properties"`
	}
	if err := json.Unmarshal(raw, &rec); err != nil {
		return Event{}, err
	}
	var t float64
	if err := json.Unmarshal(rec.Properties["time"], &t); err != nil {
		return Event{}, fmt.Errorf("properties.time: %v", err)
	}
	return storedEvent(rec.Event, epochTime(t), rec.Properties, now), nil
}

// storedEvent builds the stored form of an event whose properties are props.
func storedEvent(name string, at time.Time, props map[string]json.RawMessage, now time.Time) Event {
	ev := Event{Name: name, Time: at, Processed: now.UnixMilli()}
	ev.DistinctID = jsonText(props["distinct_id"])
	ev.InsertID = jsonText(props["$insert_id"])
	keys := make([]string, 0, len(props))
	size := 2
	for k, v := range props {
		switch k {
		case "time", "distinct_id", "$insert_id", "mp_processing_time_ms", "token":
		default:
			keys = append(keys, k)
			size += len(k) + len(v) + 4
		}
	}
	slices.Sort(keys)
	b := make([]byte, 0, size)
	b = append(b, '{')
	for i, k := range keys {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendString(b, k)
		b = append(b, ':')
		v := bytes.TrimSpace(props[k])
		if bytes.ContainsAny(v, "\n\r\t ") {
			var c bytes.Buffer
			if json.Compact(&c, v) == nil {
				v = c.Bytes()
			}
		}
		b = append(b, v...)
	}
	ev.Props = append(b, '}')
	return ev
}

// jsonText is a JSON string's value, or the JSON text of any other value.
func jsonText(raw json.RawMessage) string {
	if s, ok := stringValue(raw); ok {
		return s
	}
	return string(raw)
}

// epochTime reads seconds or milliseconds since the epoch: a value past
// year 5138 in seconds is taken as milliseconds, as Mixpanel does.
func epochTime(t float64) time.Time {
	ms := t * 1000
	if t >= 1e11 {
		ms = t
	}
	return time.UnixMilli(int64(ms)).UTC()
}

// Imported returns the events stored by /import and AddEvents, in time
// order, each as an export line of UTC seconds without the newline. An
// event imported twice appears once.
func (f *Fake) Imported() []json.RawMessage {
	f.mu.Lock()
	evs := f.store.between(time.Unix(0, 0), time.Unix(1<<40, 0))
	f.mu.Unlock()
	out := make([]json.RawMessage, len(evs))
	for i := range evs {
		line := appendLine(nil, &evs[i], evs[i].Time.Unix())
		out[i] = line[:len(line)-1]
	}
	return out
}

// ImportStats reports what /import took in: accepted events (each
// duplicate counted), duplicates (events that replaced an identical stored
// one) and, with DiscardImports, how many were validated and dropped.
func (f *Fake) ImportStats() (accepted, duplicates, discarded int64) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.imported, f.dupes, f.discarded
}

// splitRecords splits a JSON array or JSON lines into raw records.
func splitRecords(data []byte) ([]json.RawMessage, error) {
	data = bytes.TrimSpace(data)
	if len(data) == 0 {
		return nil, nil
	}
	if data[0] == '[' {
		var out []json.RawMessage
		err := json.Unmarshal(data, &out)
		return out, err
	}
	var out []json.RawMessage
	for line := range bytes.Lines(data) {
		line = bytes.TrimSpace(line)
		if len(line) == 0 {
			continue
		}
		if !json.Valid(line) {
			return nil, fmt.Errorf("line %d is not valid JSON", len(out)+1)
		}
		out = append(out, slices.Clone(line))
	}
	return out, nil
}
