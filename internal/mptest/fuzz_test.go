package mptest_test

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/cebulk/cebulk/internal/mptest"
)

// FuzzIngestion sends arbitrary bodies to /import and /engage: the
// emulator must answer one of its documented statuses with a well-formed
// body, and never panic.
func FuzzIngestion(f *testing.F) {
	f.Add([]byte(`[{"event":"A","properties":{"time":1764000000,"distinct_id":"u","$insert_id":"i"}}]`), false)
	f.Add([]byte(`{"event":"A","properties":{"time":1e400,"distinct_id":[],"$insert_id":{}}}`+"\n{"), false)
	f.Add([]byte(`[{"$token":"`+mptest.DefaultToken+`","$distinct_id":"u","$add":{"n":1e400}}]`), true)
	f.Add([]byte(`[{"$token":"`+mptest.DefaultToken+`","$distinct_id":"u","$union":{"l":[1,{"a":[2]}]}}]`), true)
	f.Add([]byte(`[{"event":"A","properties":{"time":1764000000,"distinct_id":"u","$insert_id":"i","x":{"a":{"b":[[[1]]]}}}}]`), false)
	fake := mptest.NewFake(mptest.Options{})
	f.Fuzz(func(t *testing.T, body []byte, engage bool) {
		path := "/import?strict=1&project_id=" + mptest.DefaultProjectID
		if engage {
			path = "/engage?strict=1"
		}
		req := httptest.NewRequest("POST", path, bytes.NewReader(body))
		req.Header.Set("Authorization", saAuth)
		w := httptest.NewRecorder()
		fake.ServeHTTP(w, req)
		switch w.Code {
		case http.StatusOK, http.StatusBadRequest, http.StatusRequestEntityTooLarge, http.StatusUnsupportedMediaType:
		default:
			t.Fatalf("status %d for %q", w.Code, body)
		}
		var ans map[string]any
		if err := json.Unmarshal(w.Body.Bytes(), &ans); err != nil || ans["code"] == nil || ans["status"] == nil {
			t.Fatalf("answer %q for %q is not {code, status, ...}", w.Body.Bytes(), body)
		}
	})
}
