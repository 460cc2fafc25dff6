package mptest_test

import (
	"fmt"
	"net/url"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/cebulk/cebulk/internal/mptest"
)

const tok = mptest.DefaultToken

func (e *env) engage(query, body string, headers ...string) response {
	e.t.Helper()
	headers = append([]string{"Content-Type: application/json", "Authorization:"}, headers...)
	return e.do("POST", "/engage"+query, strings.NewReader(body), headers...)
}

func TestEngageOperations(t *testing.T) {
	e := newEnv(t, mptest.Options{})
	e.fake.SeedProfiles(`{"$distinct_id":"u1","$properties":{"plan":"free","logins":2,"tags":["a"],"old":1}}
{"$distinct_id":"gone","$properties":{"plan":"pro"}}`)
	body := fmt.Sprintf(`[
{"$token":%[1]q,"$distinct_id":"u1","$set":{"plan":"pro","$email":"u1@x"}},
{"$token":%[1]q,"$distinct_id":"u1","$set_once":{"plan":"ignored","first":"2026-01-01"}},
{"$token":%[1]q,"$distinct_id":"u1","$add":{"logins":3,"credits":-1.5}},
{"$token":%[1]q,"$distinct_id":"u1","$union":{"tags":["a","b"]}},
{"$token":%[1]q,"$distinct_id":"u1","$append":{"tags":"a"}},
{"$token":%[1]q,"$distinct_id":"u1","$remove":{"tags":"b"}},
{"$token":%[1]q,"$distinct_id":"u1","$unset":["old"]},
{"$token":%[1]q,"$distinct_id":"gone","$delete":null,"$ignore_alias":true},
{"$token":%[1]q,"$distinct_id":"new","$set":{"x":1}}]`, tok)
	r := e.engage("?ip=0", body)
	if r.code != 200 || string(r.body) != "1" || !strings.HasPrefix(r.header.Get("Content-Type"), "text/plain") {
		t.Fatalf("answer = %d %q %q, want 200 text/plain 1", r.code, r.header.Get("Content-Type"), r.body)
	}
	want := map[string]map[string]any{
		"u1":  {"plan": "pro", "$email": "u1@x", "first": "2026-01-01", "logins": 5.0, "credits": -1.5, "tags": []any{"a", "a"}},
		"new": {"x": 1.0},
	}
	if diff := cmp.Diff(e.fake.Profiles(), want); diff != "" {
		t.Errorf("profiles (-got +want):\n%s", diff)
	}
	if n := len(e.fake.Updates()); n != 9 {
		t.Errorf("Updates() has %d updates, want 9", n)
	}
	// The engage query sees the updates.
	var ids []string
	for _, p := range e.page(url.Values{}).Results {
		ids = append(ids, p.DistinctID)
	}
	if diff := cmp.Diff(ids, []string{"u1", "new"}); diff != "" {
		t.Errorf("queried ids (-got +want):\n%s", diff)
	}
}

func TestEngageAnswers(t *testing.T) {
	good := fmt.Sprintf(`{"$token":%q,"$distinct_id":"u1","$set":{"a":1}}`, tok)
	badTok := `{"$token":"nope","$distinct_id":"u2","$set":{"a":1}}`
	badOp := fmt.Sprintf(`{"$token":%q,"$distinct_id":"u3","$add":{"a":"x"}}`, tok)
	noID := fmt.Sprintf(`{"$token":%q,"$set":{"a":1}}`, tok)
	twoOps := fmt.Sprintf(`{"$token":%q,"$distinct_id":"u4","$set":{"a":1},"$unset":["b"]}`, tok)
	tests := []struct {
		name, query, body string
		code              int
		want              string // exact body, or JSON compared decoded
	}{
		{"plain all valid", "", "[" + good + "]", 200, `1`},
		{"plain some valid", "", "[" + good + "," + badTok + "]", 200, `1`},
		{"plain none valid", "", "[" + badTok + "]", 200, `0`},
		{"plain broken body", "", "[{", 200, `0`},
		{"verbose valid", "?verbose=1", "[" + good + "]", 200, `{"status":1,"error":null}`},
		{"verbose none valid", "?verbose=1", "[" + badTok + "]", 200, `{"status":0,"error":"'$token' is invalid: not this project's token"}`},
		{"strict valid", "?strict=1", "[" + good + "]", 200, `{"code":200,"num_records_imported":1,"status":"OK"}`},
		{"strict mixed", "?strict=1&verbose=1", "[" + good + "," + badTok + "," + badOp + "," + noID + "," + twoOps + "]", 400, `{"code":400,
			"error":"some data points in the request failed validation","num_records_imported":1,"status":"Bad Request",
			"failed_records":[
			 {"index":1,"$distinct_id":"u2","field":"$token","message":"'$token' is invalid: not this project's token"},
			 {"index":2,"$distinct_id":"u3","field":"$add.a","message":"'$add.a' must be a number"},
			 {"index":3,"field":"$distinct_id","message":"'$distinct_id' is required and must be a non-empty string"},
			 {"index":4,"$distinct_id":"u4","field":"$unset","message":"only one operation per update: got $set and $unset"}]}`},
		{"strict too many", "?strict=1", "[" + strings.Repeat(good+",", 2000) + good + "]", 413,
			`{"code":413,"error":"request exceeds max limit of 2000 updates","status":"Request Entity Too Large"}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t, mptest.Options{})
			r := e.engage(tt.query, tt.body)
			if r.code != tt.code {
				t.Fatalf("status = %d %s, want %d", r.code, r.body, tt.code)
			}
			if strings.HasPrefix(tt.want, "{") {
				if diff := cmp.Diff(decodeAny(t, r.body), decodeAny(t, []byte(tt.want))); diff != "" {
					t.Errorf("answer (-got +want):\n%s", diff)
				}
			} else if string(r.body) != tt.want {
				t.Errorf("answer = %q, want %q", r.body, tt.want)
			}
		})
	}
	e := newEnv(t, mptest.Options{})
	r := e.engage("?verbose=1", string(gzipped(t, []byte("["+good+"]"))), "Content-Encoding: gzip")
	if diff := cmp.Diff(r.json(t), map[string]any{"status": 0.0, "error": `Content-Encoding "gzip" is not supported on /engage`}); diff != "" {
		t.Errorf("gzip body answer (-got +want):\n%s", diff)
	}
}
