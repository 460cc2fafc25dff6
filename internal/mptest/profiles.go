package mptest

import (
	"bytes"
	"encoding/json"
	"fmt"
	"maps"
	"mime"
	"net/http"
	"net/url"
	"reflect"
	"slices"
	"strings"
)

// The profile operations of /engage, in the order Mixpanel lists them.
var profileOps = []string{"$set", "$set_once", "$add", "$union", "$append", "$remove", "$unset", "$delete"}

// profileMeta are the other keys an update may carry.
var profileMeta = []string{"$token", "$distinct_id", "$ip", "$time", "$ignore_time", "$ignore_alias", "$device_id", "$user_id"}

// profileUpdate is a checked update, ready to apply.
type profileUpdate struct {
	id    string
	op    string
	value json.RawMessage
	raw   json.RawMessage
}

// handleEngage serves POST /engage: batches of profile updates, answered
// 1/0, {status, error} with verbose=1, or per record with strict=1.
func (f *Fake) handleEngage(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	strict, verbose := q.Get("strict") == "1", q.Get("verbose") == "1"
	refuse := func(code int, msg string) {
		switch {
		case strict:
			writeJSON(w, code, ingestError{Code: code, Error: msg, Status: http.StatusText(code)})
		case verbose:
			writeJSON(w, http.StatusOK, verboseAnswer{Status: 0, Error: &msg})
		default:
			writePlain(w, "0")
		}
	}
	if enc := r.Header.Get("Content-Encoding"); enc != "" && !strings.EqualFold(enc, "identity") {
		refuse(http.StatusUnsupportedMediaType, fmt.Sprintf("Content-Encoding %q is not supported on /engage", enc))
		return
	}
	body, code, msg := readBody(r, 10<<20)
	if code != 0 {
		refuse(code, msg)
		return
	}
	if !f.allowIngest(int64(len(body))) {
		f.writeStatus(w, r, RouteEngage, http.StatusTooManyRequests, rateLimitMessage)
		return
	}
	if mt, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type")); mt == "application/x-www-form-urlencoded" {
		form, err := url.ParseQuery(string(body))
		if err != nil {
			refuse(http.StatusBadRequest, "cannot parse the form body")
			return
		}
		body = []byte(form.Get("data"))
	}
	body = bytes.TrimSpace(body)
	var recs []json.RawMessage
	if len(body) > 0 && body[0] == '{' {
		recs = []json.RawMessage{body}
	} else if err := json.Unmarshal(body, &recs); err != nil {
		refuse(http.StatusBadRequest, "unable to parse request body: expected a JSON array of profile updates")
		return
	}
	switch {
	case len(recs) == 0:
		refuse(http.StatusBadRequest, "request body contains no profile updates")
		return
	case len(recs) > MaxEngageUpdates:
		refuse(http.StatusRequestEntityTooLarge, fmt.Sprintf("request exceeds max limit of %d updates", MaxEngageUpdates))
		return
	}

	var failed []map[string]any
	var good []profileUpdate
	for i, raw := range recs {
		u, field, msg := f.checkUpdate(raw)
		if msg != "" {
			fr := map[string]any{"index": i, "field": field, "message": msg}
			if u.id != "" {
				fr["$distinct_id"] = u.id
			}
			failed = append(failed, fr)
			continue
		}
		good = append(good, u)
	}
	f.apply(good)

	switch {
	case strict && len(failed) == 0:
		writeJSON(w, http.StatusOK, importAnswer{Code: 200, Imported: len(good), Status: "OK"})
	case strict:
		writeJSON(w, http.StatusBadRequest, importAnswer{Code: 400, Error: "some data points in the request failed validation",
			FailedRecords: failed, Imported: len(good), Status: "Bad Request"})
	case verbose && len(good) > 0:
		writeJSON(w, http.StatusOK, verboseAnswer{Status: 1})
	case verbose:
		m := failed[0]["message"].(string)
		writeJSON(w, http.StatusOK, verboseAnswer{Status: 0, Error: &m})
	case len(good) > 0:
		writePlain(w, "1")
	default:
		writePlain(w, "0")
	}
}

// verboseAnswer is the verbose=1 body: status 1 or 0, error null or why.
type verboseAnswer struct {
	Status int     `json:"status"`
	Error  *string `json:"error"`
}

func writePlain(w http.ResponseWriter, body string) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write([]byte(body))
}

// checkUpdate applies /engage's rules to one update.
func (f *Fake) checkUpdate(raw json.RawMessage) (profileUpdate, string, string) {
	var u profileUpdate
	if len(raw) >= MaxEventBytes {
		return u, "", "profile update is too large: must be smaller than 1MB"
	}
	var rec map[string]json.RawMessage
	if json.Unmarshal(raw, &rec) != nil || rec == nil {
		return u, "", "profile update must be a JSON object"
	}
	if d, ok := rec["$distinct_id"]; ok {
		u.id = strings.TrimSpace(jsonText(d))
	}
	tok, ok := stringValue(rec["$token"])
	switch {
	case rec["$token"] == nil:
		return u, "$token", "'$token' is required"
	case !ok || !equal(tok, f.opts.Token):
		return u, "$token", "'$token' is invalid: not this project's token"
	}
	if u.id == "" || (!isNumber(rec["$distinct_id"]) && !isString(rec["$distinct_id"])) {
		return u, "$distinct_id", "'$distinct_id' is required and must be a non-empty string"
	}
	keys := slices.Sorted(maps.Keys(rec))
	for _, k := range keys {
		if !slices.Contains(profileOps, k) && !slices.Contains(profileMeta, k) {
			return u, k, fmt.Sprintf("'%s' is not a profile operation", k)
		}
	}
	for _, k := range profileOps { // in the documented order
		if _, ok := rec[k]; !ok {
			continue
		}
		if u.op != "" {
			return u, k, fmt.Sprintf("only one operation per update: got %s and %s", u.op, k)
		}
		u.op, u.value = k, rec[k]
	}
	if u.op == "" {
		return u, "", "an update needs one of " + strings.Join(profileOps, ", ")
	}
	switch u.op {
	case "$unset":
		var names []string
		if json.Unmarshal(u.value, &names) != nil || len(names) == 0 {
			return u, u.op, "'$unset' must be a non-empty JSON array of property names"
		}
	case "$delete":
	default:
		var m map[string]json.RawMessage
		if json.Unmarshal(u.value, &m) != nil || m == nil {
			return u, u.op, fmt.Sprintf("'%s' must be a JSON object", u.op)
		}
		for _, k := range slices.Sorted(maps.Keys(m)) {
			v := m[k]
			switch {
			case u.op == "$add" && !isNumber(v):
				return u, u.op + "." + k, fmt.Sprintf("'$add.%s' must be a number", k)
			case u.op == "$union" && (len(bytes.TrimSpace(v)) == 0 || bytes.TrimSpace(v)[0] != '['):
				return u, u.op + "." + k, fmt.Sprintf("'$union.%s' must be a JSON array", k)
			}
			if msg := checkValue(v, 2); msg != "" {
				return u, u.op + "." + k, fmt.Sprintf("'%s.%s' is invalid: %s", u.op, k, msg)
			}
		}
	}
	var buf bytes.Buffer
	_ = json.Compact(&buf, raw)
	u.raw = buf.Bytes()
	return u, "", ""
}

func isString(raw json.RawMessage) bool {
	_, ok := stringValue(raw)
	return ok
}

// apply applies valid updates in order and records them.
func (f *Fake) apply(good []profileUpdate) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, u := range good {
		f.applyUpdate(u)
		f.updates = append(f.updates, u.raw)
	}
}

// applyUpdate changes the profile store; f.mu is held.
func (f *Fake) applyUpdate(u profileUpdate) {
	if u.op == "$delete" {
		delete(f.profiles.byID, u.id)
		return
	}
	p := f.profiles.get(u.id, true)
	if u.op == "$unset" {
		var names []string
		_ = json.Unmarshal(u.value, &names)
		for _, n := range names {
			delete(p, n)
		}
		return
	}
	var m map[string]any
	_ = json.Unmarshal(u.value, &m)
	for k, v := range m {
		old, has := p[k]
		switch u.op {
		case "$set":
			p[k] = v
		case "$set_once":
			if !has {
				p[k] = v
			}
		case "$add":
			n, _ := old.(float64)
			if has && !isFloat(old) {
				continue // Mixpanel ignores $add on a non-number
			}
			add, _ := v.(float64)
			p[k] = n + add
		case "$union":
			list, _ := old.([]any)
			more, _ := v.([]any)
			for _, x := range more {
				if !slices.ContainsFunc(list, func(y any) bool { return reflect.DeepEqual(x, y) }) {
					list = append(list, x)
				}
			}
			p[k] = list
		case "$append":
			list, _ := old.([]any)
			p[k] = append(list, v)
		case "$remove":
			if list, ok := old.([]any); ok {
				p[k] = slices.DeleteFunc(list, func(y any) bool { return reflect.DeepEqual(v, y) })
			}
		}
	}
}

func isFloat(v any) bool {
	_, ok := v.(float64)
	return ok
}

// Updates returns the profile updates accepted by /engage, in order, as
// compact JSON.
func (f *Fake) Updates() []json.RawMessage {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.updates)
}
