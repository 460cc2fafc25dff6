package mptest

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// gzipThreshold is the body size from which the export compresses an
// answer when the client accepts gzip (the OpenAPI file: "> 1400 bytes").
const gzipThreshold = 1400

// exportQuery is a parsed export request.
type exportQuery struct {
	from, to time.Time // instants, [from, to)
	events   map[string]bool
	where    where
	limit    int
	inMS     bool
}

func (f *Fake) parseExport(r *http.Request) (*exportQuery, string) {
	q := r.URL.Query()
	zone := f.projectZone()
	day := func(name string) (time.Time, string) {
		v := q.Get(name)
		if v == "" {
			return time.Time{}, name + " is a required parameter"
		}
		t, err := time.ParseInLocation("2006-01-02", v, zone)
		if err != nil {
			return time.Time{}, fmt.Sprintf("%s: invalid date %q, expected yyyy-mm-dd", name, v)
		}
		return t, ""
	}
	from, msg := day("from_date")
	if msg != "" {
		return nil, msg
	}
	to, msg := day("to_date")
	if msg != "" {
		return nil, msg
	}
	if to.Before(from) {
		return nil, "to_date must not be before from_date"
	}
	eq := &exportQuery{from: from, to: to.AddDate(0, 0, 1)}
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n <= 0 || n > MaxExportLimit {
			return nil, fmt.Sprintf("limit must be an integer between 1 and %d", MaxExportLimit)
		}
		eq.limit = n
	}
	if v := q.Get("event"); v != "" {
		var names []string
		if err := json.Unmarshal([]byte(v), &names); err != nil {
			return nil, "event must be a JSON array of event names"
		}
		eq.events = map[string]bool{}
		for _, n := range names {
			eq.events[n] = true
		}
	}
	w, err := parseWhere(q.Get("where"))
	if err != nil {
		return nil, err.Error()
	}
	eq.where = w
	switch v := q.Get("time_in_ms"); v {
	case "", "false", "0":
	case "true", "1":
		eq.inMS = true
	default:
		return nil, "time_in_ms must be true or false"
	}
	return eq, ""
}

// handleExport serves GET /api/2.0/export: JSON lines of the events of the
// inclusive day range, generated and stored, streamed.
func (f *Fake) handleExport(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	if ae := f.checkServiceAccount(r, q.Get("project_id"), false); ae != nil {
		f.writeStatus(w, r, RouteExport, ae.code, ae.msg)
		return
	}
	eq, msg := f.parseExport(r)
	if eq == nil {
		f.writeStatus(w, r, RouteExport, http.StatusBadRequest, msg)
		return
	}
	done, ok := f.admit(RouteExport)
	if !ok {
		f.writeStatus(w, r, RouteExport, http.StatusTooManyRequests, rateLimitMessage)
		return
	}
	defer done()
	f.mu.Lock()
	gen := f.gen
	stored := f.store.between(eq.from, eq.to)
	cut := int64(-1)
	if len(f.cuts) > 0 {
		cut, f.cuts = f.cuts[0], f.cuts[1:]
	}
	f.mu.Unlock()

	out := newExportWriter(w, acceptsGzip(r.Header.Get("Accept-Encoding")), cut)
	zone := f.projectZone()
	n := 0
	line := make([]byte, 0, 1024)
	emit := func(ev *Event) bool {
		if eq.events != nil && !eq.events[ev.Name] {
			return true
		}
		if eq.where != nil && !eq.where.match(eventProps(ev)) {
			return true
		}
		t := ev.Time.Unix()
		if zone != time.UTC {
			_, off := ev.Time.In(zone).Zone()
			t += int64(off)
		}
		if eq.inMS {
			t = t*1000 + int64(ev.Time.Nanosecond()/1e6)
		}
		line = appendLine(line[:0], ev, t)
		if out.write(line) != nil {
			return false
		}
		n++
		return eq.limit == 0 || n < eq.limit
	}
	ok = true
	if gen != nil {
		gen(eq.from, eq.to, func(ev Event) bool {
			ok = emit(&ev)
			return ok
		})
	}
	for i := 0; ok && i < len(stored); i++ {
		ok = emit(&stored[i])
	}
	out.close()
}

// eventProps is every property of ev, for where.
func eventProps(ev *Event) map[string]json.RawMessage {
	props := map[string]json.RawMessage{}
	if len(ev.Props) > 0 {
		_ = json.Unmarshal(ev.Props, &props)
	}
	props["distinct_id"], _ = json.Marshal(ev.DistinctID)
	props["$insert_id"], _ = json.Marshal(ev.InsertID)
	props["time"] = json.RawMessage(strconv.FormatInt(ev.Time.Unix(), 10))
	props["event"], _ = json.Marshal(ev.Name) // not a property, but harmless
	return props
}

func acceptsGzip(h string) bool {
	for part := range strings.SplitSeq(h, ",") {
		name, params, _ := strings.Cut(strings.TrimSpace(part), ";")
		if strings.EqualFold(strings.TrimSpace(name), "gzip") && strings.ReplaceAll(params, " ", "") != "q=0" {
			return true
		}
	}
	return false
}

// exportWriter streams the export: it holds the first gzipThreshold bytes
// to decide on compression, then writes through a bufio.Writer (and a gzip
// writer when compressing), flushing now and then, so memory stays flat
// whatever the export's size.
type exportWriter struct {
	w       http.ResponseWriter
	gz      bool
	head    []byte
	started bool
	bw      *bufio.Writer
	zw      *gzip.Writer
	dst     io.Writer
	cut     int64 // bytes left before an injected cut; -1 for none
	since   int
	err     error
}

func newExportWriter(w http.ResponseWriter, gz bool, cut int64) *exportWriter {
	return &exportWriter{w: w, gz: gz, cut: cut}
}

func (e *exportWriter) start(compress bool) {
	e.started = true
	h := e.w.Header()
	h.Set("Content-Type", "text/plain; charset=utf-8")
	if compress {
		h.Set("Content-Encoding", "gzip")
		h.Add("Vary", "Accept-Encoding")
	}
	e.w.WriteHeader(http.StatusOK)
	e.bw = bufio.NewWriterSize(e.w, 32<<10)
	e.dst = e.bw
	if compress {
		e.zw, _ = gzip.NewWriterLevel(e.bw, gzip.BestSpeed)
		e.dst = e.zw
	}
}

func (e *exportWriter) write(p []byte) error {
	if e.err != nil {
		return e.err
	}
	if e.cut >= 0 && int64(len(p)) > e.cut {
		p = p[:e.cut]
		if !e.started {
			e.start(e.gz)
			_, _ = e.dst.Write(e.head)
			e.head = nil
		}
		e.raw(p)
		e.flush()
		panic(http.ErrAbortHandler) // the connection is cut mid-body
	}
	if e.cut >= 0 {
		e.cut -= int64(len(p))
	}
	e.raw(p)
	return e.err
}

func (e *exportWriter) raw(p []byte) {
	if !e.started {
		if len(e.head)+len(p) <= gzipThreshold || !e.gz {
			if !e.gz {
				e.start(false)
			} else {
				e.head = append(e.head, p...)
				return
			}
		} else {
			e.start(true)
			if _, err := e.dst.Write(e.head); err != nil {
				e.err = err
				return
			}
			e.head = nil
		}
	}
	if _, err := e.dst.Write(p); err != nil {
		e.err = err
		return
	}
	e.since += len(p)
	if e.since >= 256<<10 {
		e.since = 0
		e.flush()
	}
}

func (e *exportWriter) flush() {
	if e.zw != nil {
		if err := e.zw.Flush(); err != nil {
			e.err = err
		}
	}
	if e.bw != nil {
		if err := e.bw.Flush(); err != nil {
			e.err = err
		}
	}
	if fl, ok := e.w.(http.Flusher); ok && e.err == nil {
		fl.Flush()
	}
}

func (e *exportWriter) close() {
	if !e.started {
		e.start(false)
		_, _ = io.Copy(e.dst, bytes.NewReader(e.head))
	}
	if e.zw != nil {
		_ = e.zw.Close()
	}
	_ = e.bw.Flush()
}
