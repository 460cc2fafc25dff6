package cetest

import (
	"bytes"
	"encoding/json"
	"io"
	"math"
	"mime"
	"mime/multipart"
	"net/http"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// CallbackHeader is the request header that carries a job's callback URL.
const CallbackHeader = "Elements-Async-Callback-Url"

// maxSmallBody bounds request bodies other than uploads.
const maxSmallBody = 1 << 20

// handleQuery creates a download job from CEQL: POST bulk/query?q=&from=&to=,
// with an optional body carrying metaData (multipart, JSON or form).
func (f *Fake) handleQuery(w http.ResponseWriter, r *http.Request) {
	meta, bodyQuery, err := readQueryBody(r)
	if err != nil {
		f.fail(w, err)
		return
	}
	q := r.URL.Query()
	ceql := q.Get("q")
	if ceql == "" {
		ceql = bodyQuery
	}
	if ceql == "" {
		f.writeError(w, http.StatusBadRequest, "Missing required parameter q: a CEQL query such as select * from activities")
		return
	}
	stmt, err := parseCEQL(ceql)
	if err != nil {
		f.fail(w, err)
		return
	}
	from, to, err := parseWindow(q.Get("from"), q.Get("to"))
	if err != nil {
		f.fail(w, err)
		return
	}
	cb := r.Header.Get(CallbackHeader)
	if cb != "" && !validCallbackURL(cb) {
		f.writeError(w, http.StatusBadRequest, "Invalid %s: an absolute http or https URL is required", CallbackHeader)
		return
	}
	f.createDownload(w, downloadSpec{
		object: stmt.object, query: ceql, from: from, to: to, where: stmt.where, limit: stmt.limit,
		format: "json", callback: cb, payload: meta.CallbackPayload,
	})
}

// handleDownloadV3 creates a download job from the v3 JSON job criteria.
func (f *Fake) handleDownloadV3(w http.ResponseWriter, r *http.Request) {
	if mt, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type")); mt != "application/json" {
		f.writeError(w, http.StatusUnsupportedMediaType, "Content-Type must be application/json")
		return
	}
	var req wireDownloadRequest
	dec := json.NewDecoder(http.MaxBytesReader(nil, r.Body, maxSmallBody))
	if err := dec.Decode(&req); err != nil {
		f.writeError(w, http.StatusBadRequest, "Invalid bulk download request body: %v", err)
		return
	}
	if req.ObjectName == "" {
		f.writeError(w, http.StatusBadRequest, "objectName is required")
		return
	}
	var format string
	switch strings.ToLower(req.Format) {
	case "application/json":
		format = "json"
	case "application/jsonl":
		format = "jsonl"
	case "txt/csv", "text/csv":
		format = "csv"
	case "":
		f.writeError(w, http.StatusBadRequest, "format is required: application/json, application/jsonl or txt/csv")
		return
	default:
		f.writeError(w, http.StatusBadRequest, "Unsupported format %q: use application/json, application/jsonl or txt/csv", req.Format)
		return
	}
	from, to, err := parseWindow(req.From, req.To)
	if err != nil {
		f.fail(w, err)
		return
	}
	if req.NotificationURL != "" && !validCallbackURL(req.NotificationURL) {
		f.writeError(w, http.StatusBadRequest, "Invalid notificationUrl: an absolute http or https URL is required")
		return
	}
	query := "select * from " + req.ObjectName
	if req.Where != "" {
		query += " where " + req.Where
	}
	f.createDownload(w, downloadSpec{
		object: req.ObjectName, query: query, from: from, to: to, where: parseWhere(req.Where),
		limit: max(0, req.Limit), format: format, callback: req.NotificationURL,
	})
}

type downloadSpec struct {
	object, query, format, callback string
	from, to                        time.Time
	where                           []condition
	limit                           int64
	payload                         json.RawMessage
}

func (f *Fake) createDownload(w http.ResponseWriter, s downloadSpec) {
	f.mu.Lock()
	src, ok := f.data[s.object]
	f.mu.Unlock()
	if !ok {
		f.writeError(w, http.StatusBadRequest, "Unknown object %q: the mixpanel element has activities and users", s.object)
		return
	}
	sel := selection{src: src, object: s.object, from: s.from, to: s.to, where: s.where, limit: s.limit,
		days: f.opts.WholeDays, zone: f.opts.ProjectTimezone}
	count := sel.count() // outside the lock: it may run a generator

	f.mu.Lock()
	j := &bulkJob{
		object: s.object, direction: DirectionDownload, query: s.query, format: s.format,
		callback: s.callback, payload: s.payload, sel: sel, count: count,
	}
	j.failedRecords, f.nextFailed = f.nextFailed, 0
	f.addJobLocked(j)
	resp := wireCreated{ID: j.id, Status: j.status, InstanceID: f.opts.InstanceID}
	f.mu.Unlock()
	writeJSON(w, http.StatusOK, resp)
}

// readQueryBody reads the optional body of POST bulk/query: multipart or
// form fields metaData (a JSON string) and q, or a JSON object with query,
// metaData (an object or a JSON string) and callback-payload.
func readQueryBody(r *http.Request) (meta wireMetaData, query string, err error) {
	ct := r.Header.Get("Content-Type")
	if ct == "" {
		drain(r.Body)
		return meta, "", nil
	}
	mt, params, err := mime.ParseMediaType(ct)
	if err != nil {
		return meta, "", apiErrorf(http.StatusUnsupportedMediaType, "Invalid Content-Type %q", ct)
	}
	body := http.MaxBytesReader(nil, r.Body, maxSmallBody)
	bad := func(format string, args ...any) (wireMetaData, string, error) {
		return wireMetaData{}, "", apiErrorf(http.StatusBadRequest, format, args...)
	}
	switch mt {
	case "multipart/form-data":
		mr := multipart.NewReader(body, params["boundary"])
		for {
			p, err := mr.NextPart()
			if err == io.EOF {
				break
			}
			if err != nil {
				return bad("Invalid multipart body: %v", err)
			}
			data, err := io.ReadAll(p)
			if err != nil {
				return bad("Invalid multipart body: %v", err)
			}
			switch p.FormName() {
			case "metaData":
				if meta, err = parseMetaData(data); err != nil {
					return bad("%v", err)
				}
			case "q", "query":
				query = string(data)
			}
		}
	case "application/x-www-form-urlencoded":
		data, err := io.ReadAll(body)
		if err != nil {
			return bad("Invalid form body: %v", err)
		}
		form, err := url.ParseQuery(string(data))
		if err != nil {
			return bad("Invalid form body: %v", err)
		}
		if meta, err = parseMetaData([]byte(form.Get("metaData"))); err != nil {
			return bad("%v", err)
		}
		query = form.Get("q")
	case "application/json":
		var v struct {
			Query           string          `json:"query"`
			MetaData        json.RawMessage `json:"metaData"`
			CallbackPayload json.RawMessage `json:"callback-payload"`
		}
		if err := json.NewDecoder(body).Decode(&v); err != nil && err != io.EOF {
			return bad("Invalid JSON body: %v", err)
		}
		md := bytes.TrimSpace(v.MetaData)
		if len(md) > 0 && md[0] == '"' {
			var s string
			if err := json.Unmarshal(md, &s); err != nil {
				return bad("Invalid metaData: %v", err)
			}
			md = []byte(s)
		}
		if meta, err = parseMetaData(md); err != nil {
			return bad("%v", err)
		}
		if len(v.CallbackPayload) > 0 && meta.CallbackPayload == nil {
			meta.CallbackPayload = compact(v.CallbackPayload)
		}
		query = v.Query
	default:
		return meta, "", apiErrorf(http.StatusUnsupportedMediaType, "Unsupported Content-Type %q", mt)
	}
	return meta, query, nil
}

// parseMetaData parses a metaData JSON object; empty input is no metaData.
func parseMetaData(data []byte) (wireMetaData, error) {
	var meta wireMetaData
	data = bytes.TrimSpace(data)
	if len(data) == 0 {
		return meta, nil
	}
	if err := json.Unmarshal(data, &meta); err != nil {
		return meta, apiErrorf(http.StatusBadRequest, "Invalid metaData: it must be a JSON object: %v", err)
	}
	if len(meta.CallbackPayload) > 0 {
		meta.CallbackPayload = compact(meta.CallbackPayload)
	}
	return meta, nil
}

// compact returns a compacted copy of raw (an exact copy if it is not
// valid JSON).
func compact(raw []byte) json.RawMessage {
	b := bytes.NewBuffer(make([]byte, 0, len(raw)))
	if err := json.Compact(b, raw); err != nil {
		return append(json.RawMessage(nil), raw...)
	}
	return b.Bytes()
}

func validCallbackURL(s string) bool {
	u, err := url.Parse(s)
	return err == nil && (u.Scheme == "http" || u.Scheme == "https") && u.Host != ""
}

type statement struct {
	object string
	where  []condition
	limit  int64
}

var ceqlRE = regexp.MustCompile(`(?is)^\s*select\s+(.+?)\s+from\s+([A-Za-z0-9_$-]+)(?:\s+where\s+(.+?))?(?:\s+limit\s+(\d+))?\s*;?\s*$`)

// parseCEQL parses the CEQL the mixpanel element accepts in bulk:
// select * from <object> [where ...] [limit N].
func parseCEQL(q string) (statement, error) {
	m := ceqlRE.FindStringSubmatch(q)
	if m == nil {
		return statement{}, apiErrorf(http.StatusBadRequest, "Invalid CEQL %q: expected select * from <object> [where ...]", q)
	}
	if strings.TrimSpace(m[1]) != "*" {
		return statement{}, apiErrorf(http.StatusBadRequest, "Invalid CEQL %q: the mixpanel element supports only select *", q)
	}
	st := statement{object: m[2], where: parseWhere(m[3])}
	if m[4] != "" {
		n, err := strconv.ParseInt(m[4], 10, 64)
		if err != nil {
			return statement{}, apiErrorf(http.StatusBadRequest, "Invalid CEQL limit %q", m[4])
		}
		st.limit = n
	}
	return st, nil
}

// condition is one comparison properties["prop"] op value.
type condition struct {
	prop, op string
	str      string
	num      float64
	isNum    bool
}

var (
	condRE  = regexp.MustCompile(`properties\[\s*"([^"]+)"\s*\]\s*(==|!=|>=|<=|>|<)\s*(?:"([^"]*)"|(-?[0-9]+(?:\.[0-9]+)?))`)
	orNotRE = regexp.MustCompile(`(?i)\b(or|not)\b`)
)

// parseWhere extracts the comparisons properties["p"] op "v" (or a number)
// from a where clause, such as CE's own test query
// query = '(properties["$created"] > "2011-03-14T09:53:54")'. They are
// joined by and; a clause using or or not, or holding no such comparison,
// is ignored (every record matches).
func parseWhere(where string) []condition {
	if where == "" || orNotRE.MatchString(where) {
		return nil
	}
	var conds []condition
	for _, m := range condRE.FindAllStringSubmatch(where, -1) {
		c := condition{prop: m[1], op: m[2], str: m[3]}
		if m[4] != "" {
			c.num, _ = strconv.ParseFloat(m[4], 64)
			c.isNum = true
		}
		conds = append(conds, c)
	}
	return conds
}

// matches reports whether the value raw (JSON) satisfies c.
func (c condition) matches(raw json.RawMessage, present bool) bool {
	if !present {
		return c.op == "!="
	}
	var cmp int
	if c.isNum {
		x, err := strconv.ParseFloat(string(raw), 64)
		if err != nil {
			return c.op == "!="
		}
		switch {
		case x < c.num:
			cmp = -1
		case x > c.num:
			cmp = 1
		}
	} else {
		var s string
		if json.Unmarshal(raw, &s) != nil {
			return c.op == "!="
		}
		cmp = strings.Compare(s, c.str)
	}
	switch c.op {
	case "==":
		return cmp == 0
	case "!=":
		return cmp != 0
	case ">":
		return cmp > 0
	case ">=":
		return cmp >= 0
	case "<":
		return cmp < 0
	default:
		return cmp <= 0
	}
}

// parseWindow parses the from and to of a download (either may be empty).
func parseWindow(fromS, toS string) (from, to time.Time, err error) {
	if fromS != "" {
		if from, err = parseTime(fromS); err != nil {
			return from, to, apiErrorf(http.StatusBadRequest, "Invalid from %q: use ISO-8601, e.g. 2014-10-06T13:22:17-08:00", fromS)
		}
	}
	if toS != "" {
		if to, err = parseTime(toS); err != nil {
			return from, to, apiErrorf(http.StatusBadRequest, "Invalid to %q: use ISO-8601, e.g. 2014-10-06T13:22:17-08:00", toS)
		}
	}
	if !from.IsZero() && !to.IsZero() && to.Before(from) {
		return from, to, apiErrorf(http.StatusBadRequest, "Invalid window: to is before from")
	}
	return from, to, nil
}

func parseTime(s string) (time.Time, error) {
	var err error
	for _, layout := range []string{time.RFC3339Nano, "2006-01-02T15:04:05Z0700", "2006-01-02T15:04:05", "2006-01-02"} {
		var t time.Time
		if t, err = time.Parse(layout, s); err == nil {
			return t, nil
		}
	}
	return time.Time{}, err
}

// selection is what a download job serves: the records of src that match.
type selection struct {
	src      Generator
	object   string
	from, to time.Time // activities only; zero = open
	where    []condition
	limit    int64          // 0 = none
	days     bool           // Options.WholeDays
	zone     *time.Location // Options.ProjectTimezone; nil = a UTC project
}

// byTime reports whether the selection filters on properties.time.
func (s selection) byTime() bool {
	return s.object == "activities" && (!s.from.IsZero() || !s.to.IsZero())
}

func (s selection) match(rec Record) bool {
	if s.byTime() {
		t := rec.Time
		if t.IsZero() {
			var ok bool
			if t, ok = eventTime(rec.JSON); !ok {
				return false
			}
		}
		if s.days {
			loc := s.zone
			if loc == nil {
				loc = time.UTC
			}
			if !inDays(t, s.from, s.to, loc) {
				return false
			}
		} else if (!s.from.IsZero() && t.Before(s.from)) || (!s.to.IsZero() && !t.Before(s.to)) {
			return false
		}
	}
	if len(s.where) == 0 {
		return true
	}
	var v struct {
		Properties     map[string]json.RawMessage `json:"properties"`
		UserProperties map[string]json.RawMessage `json:"$properties"`
	}
	if json.Unmarshal(rec.JSON, &v) != nil {
		return false
	}
	props := v.Properties
	if s.object == "users" {
		props = v.UserProperties
	}
	for _, c := range s.where {
		raw, ok := props[c.prop]
		if !c.matches(raw, ok) {
			return false
		}
	}
	return true
}

// each yields the JSON of every selected record, in order.
func (s selection) each(yield func(json.RawMessage) bool) {
	if s.src.Records == nil {
		return
	}
	var n int64
	s.src.Records(func(rec Record) bool {
		if !s.match(rec) {
			return true
		}
		if s.limit > 0 && n >= s.limit {
			return false
		}
		n++
		if s.zone != nil && s.object == "activities" {
			t := rec.Time
			if t.IsZero() {
				t, _ = eventTime(rec.JSON)
			}
			return yield(projectTimeJSON(rec.JSON, t, s.zone))
		}
		return yield(rec.JSON)
	})
}

// count is the number of records each yields, computed without generating
// them when the generator can count.
func (s selection) count() int64 {
	if s.src.Count != nil && len(s.where) == 0 && !s.days {
		var from, to time.Time
		if s.object == "activities" {
			from, to = s.from, s.to
		}
		n := s.src.Count(from, to)
		if s.limit > 0 {
			n = min(n, s.limit)
		}
		return n
	}
	var n int64
	s.each(func(json.RawMessage) bool { n++; return true })
	return n
}

// eventTime reads properties.time (seconds, or milliseconds when larger
// than 1e11) of an activity.
func eventTime(raw json.RawMessage) (time.Time, bool) {
	var v struct {
		Properties struct {
			Time json.Number `json:"time"`
		} `json:"properties"`
	}
	if json.Unmarshal(raw, &v) != nil || v.Properties.Time == "" {
		return time.Time{}, false
	}
	x, err := v.Properties.Time.Float64()
	if err != nil {
		return time.Time{}, false
	}
	return epochTime(x), true
}

// epochTime converts Mixpanel's time, seconds or milliseconds since the
// epoch, to a time.
func epochTime(x float64) time.Time {
	if math.Abs(x) > 1e11 {
		x /= 1000
	}
	sec, frac := math.Modf(x)
	return time.Unix(int64(sec), int64(frac*1e9))
}
