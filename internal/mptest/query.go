package mptest

import (
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"
)

// profileStore holds people profiles in creation order.
type profileStore struct {
	byID  map[string]map[string]any
	order []string // may hold deleted ids; byID decides
}

func newProfileStore() profileStore { return profileStore{byID: map[string]map[string]any{}} }

func (s *profileStore) get(id string, create bool) map[string]any {
	p, ok := s.byID[id]
	if !ok && create {
		p = map[string]any{}
		s.byID[id] = p
		s.order = append(s.order, id)
	}
	return p
}

// ids returns the live ids in creation order, compacting the order.
func (s *profileStore) ids() []string {
	live := s.order[:0]
	seen := make(map[string]bool, len(s.byID))
	for _, id := range s.order {
		if _, ok := s.byID[id]; ok && !seen[id] {
			seen[id] = true
			live = append(live, id)
		}
	}
	s.order = live
	return slices.Clone(live)
}

// SeedProfiles adds or replaces profiles. profiles is a JSON array or JSON
// lines of {"$distinct_id": ..., "$properties": {...}}, the engage query's
// shape. It panics on malformed input: it is a test-setup helper.
func (f *Fake) SeedProfiles(profiles string) {
	recs, err := splitRecords([]byte(profiles))
	if err != nil {
		panic(fmt.Sprintf("mptest: SeedProfiles: %v", err))
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	for i, raw := range recs {
		var p struct {
			ID    json.RawMessage `json:"$distinct_id"`
			Props map[string]any  `json:"$properties"`
		}
		if err := json.Unmarshal(raw, &p); err != nil || len(p.ID) == 0 {
			panic(fmt.Sprintf("mptest: SeedProfiles: profile %d: not {\"$distinct_id\", \"$properties\"}", i))
		}
		id := jsonText(p.ID)
		delete(f.profiles.byID, id)
		prof := f.profiles.get(id, true)
		for k, v := range p.Props {
			prof[k] = v
		}
	}
}

// SampleProfiles returns n deterministic profiles "user-0" … "user-<n-1>"
// in the engage query's shape, as JSON lines for SeedProfiles.
func SampleProfiles(seed int64, n int) string {
	var b strings.Builder
	first := []string{"Ada", "Grace", "Alan", "Edsger", "Barbara", "Ken"}
	last := []string{"Lovelace", "Hopper", "Turing", "Dijkstra", "Liskov", "Thompson"}
	for k := range n {
		h := uint64(seed)*0x9e3779b97f4a7c15 ^ uint64(k)*0xbf58476d1ce4e5b9
		h ^= h >> 29
		fn, ln := first[h%uint64(len(first))], last[(h>>8)%uint64(len(last))]
		created := time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC).Add(time.Duration(h%(700*86400)) * time.Second)
		fmt.Fprintf(&b, `{"$distinct_id":"user-%d","$properties":{"$email":"%s.%s%d@example.com","$name":"%s %s","$created":"%s","plan":"%s","credits":%d}}`+"\n",
			k, strings.ToLower(fn), strings.ToLower(ln), k, fn, ln, created.Format("2006-01-02T15:04:05"),
			samplePlans[k%len(samplePlans)], (h>>16)%500)
	}
	return b.String()
}

// Profiles returns a copy of every profile's properties by distinct_id.
func (f *Fake) Profiles() map[string]map[string]any {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := make(map[string]map[string]any, len(f.profiles.byID))
	for id, p := range f.profiles.byID {
		raw, _ := json.Marshal(p)
		var c map[string]any
		_ = json.Unmarshal(raw, &c)
		out[id] = c
	}
	return out
}

// session is an engage query's cached result: the matching ids at page 0.
type session struct {
	ids      []string
	params   string // where, distinct ids and output properties, as sent
	output   []string
	lastUsed time.Time
}

// engagePage is the engage query's answer.
type engagePage struct {
	Page      int             `json:"page"`
	PageSize  int             `json:"page_size"`
	SessionID string          `json:"session_id"`
	Status    string          `json:"status"`
	Total     int             `json:"total"`
	Results   []engageProfile `json:"results"`
}

type engageProfile struct {
	DistinctID string         `json:"$distinct_id"`
	Properties map[string]any `json:"$properties"`
}

// handleEngageQuery serves POST /api/query/engage (form-encoded).
func (f *Fake) handleEngageQuery(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, 1<<20)
	if err := r.ParseForm(); err != nil {
		f.writeStatus(w, r, RouteEngageQuery, http.StatusBadRequest, "cannot parse the form body")
		return
	}
	form := r.Form
	if ae := f.checkServiceAccount(r, form.Get("project_id"), false); ae != nil {
		f.writeStatus(w, r, RouteEngageQuery, ae.code, ae.msg)
		return
	}
	bad := func(format string, args ...any) {
		f.writeStatus(w, r, RouteEngageQuery, http.StatusBadRequest, fmt.Sprintf(format, args...))
	}
	page := 0
	if v := form.Get("page"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 {
			bad("page must be a non-negative integer")
			return
		}
		page = n
	}
	sid := form.Get("session_id")
	if page > 0 && sid == "" {
		bad("session_id is required when page is above 0")
		return
	}
	wh, err := parseWhere(form.Get("where"))
	if err != nil {
		bad("%v", err)
		return
	}
	var ids []string
	if v := form.Get("distinct_id"); v != "" {
		ids = []string{v}
	}
	if v := form.Get("distinct_ids"); v != "" {
		if err := json.Unmarshal([]byte(v), &ids); err != nil {
			bad("distinct_ids must be a JSON array of strings")
			return
		}
	}
	var output []string
	if v := form.Get("output_properties"); v != "" {
		if err := json.Unmarshal([]byte(v), &output); err != nil {
			bad("output_properties must be a JSON array of strings")
			return
		}
	}
	for _, p := range []string{"behaviors", "filter_by_cohort", "data_group_id"} {
		if form.Get(p) != "" {
			bad("%s is not supported by mptest", p)
			return
		}
	}
	params := fmt.Sprintf("where=%q distinct_id=%q distinct_ids=%q output_properties=%q",
		form.Get("where"), form.Get("distinct_id"), form.Get("distinct_ids"), form.Get("output_properties"))
	done, ok := f.admit(RouteEngageQuery)
	if !ok {
		f.writeStatus(w, r, RouteEngageQuery, http.StatusTooManyRequests, rateLimitMessage)
		return
	}
	defer done()

	f.mu.Lock()
	defer f.mu.Unlock()
	now := f.now()
	for id, s := range f.sessions {
		if now.Sub(s.lastUsed) > f.opts.SessionTTL {
			delete(f.sessions, id)
		}
	}
	var s *session
	if sid != "" {
		s = f.sessions[sid]
		if s == nil || s.params != params {
			bad("request for page in uncached query for params %s (session_id %q is unknown or expired; query page 0 again)", params, sid)
			return
		}
	} else {
		s = &session{params: params, output: output}
		candidates := ids
		if candidates == nil {
			candidates = f.profiles.ids()
		}
		for _, id := range candidates {
			p, ok := f.profiles.byID[id]
			if !ok || (wh != nil && !wh.match(rawProps(p))) {
				continue
			}
			s.ids = append(s.ids, id)
		}
		f.lastID++
		sid = fmt.Sprintf("%d-MPTEST%d", now.Unix(), f.lastID)
		f.sessions[sid] = s
	}
	s.lastUsed = now
	size := f.opts.PageSize
	ans := engagePage{Page: page, PageSize: size, SessionID: sid, Status: "ok", Total: len(s.ids), Results: []engageProfile{}}
	for i := page * size; i < len(s.ids) && i < (page+1)*size; i++ {
		id := s.ids[i]
		p, ok := f.profiles.byID[id]
		if !ok {
			continue // deleted since page 0
		}
		props := make(map[string]any, len(p))
		for k, v := range p {
			if s.output == nil || slices.Contains(s.output, k) {
				props[k] = v
			}
		}
		ans.Results = append(ans.Results, engageProfile{DistinctID: id, Properties: props})
	}
	writeJSON(w, http.StatusOK, ans)
}

// rawProps is p with JSON values, for where.
func rawProps(p map[string]any) map[string]json.RawMessage {
	out := make(map[string]json.RawMessage, len(p))
	for k, v := range p {
		out[k], _ = json.Marshal(v)
	}
	return out
}
