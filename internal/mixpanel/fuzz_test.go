package mixpanel

import (
	"bytes"
	"encoding/json"
	"errors"
	"testing"
)

// FuzzNormalize: any JSON object, as an event and as a profile update,
// directly and through FromCSVRow, never panics; what is accepted is valid
// JSON under the size limit and normalises to itself again.
func FuzzNormalize(f *testing.F) {
	for _, seed := range []string{
		`{"event":"e","properties":{"time":1618716477,"distinct_id":"u","$insert_id":"a-1","x":{"y":[1,"2",null]}}}`,
		`{"event":"e","properties":{"time":"2021-04-18T03:27:57+02:00","distinct_id":12}}`,
		`{"event":"e","properties":{"time":"1618716477000.5","distinct_id":"","$insert_id":null}}`,
		`{"event":404,"properties":{"time":-1,"distinct_id":"null"}}`,
		`{"$distinct_id":"u","$set":{"a":1},"$unset":["b"],"$add":{"n":1.5},"$union":{"l":[1]},"$token":"t","$time":1}`,
		`{"$distinct_id":7,"$delete":null}`,
		`{"event":"e","time":"1","distinct_id":"u","plan":"pro"}`,
		`{}`,
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		dec := json.NewDecoder(bytes.NewReader(data))
		dec.UseNumber()
		var rec map[string]any
		if err := dec.Decode(&rec); err != nil || rec == nil {
			return
		}
		_ = InsertID(rec)
		for _, obj := range []Object{Activities, Users} {
			for _, r := range []map[string]any{rec, FromCSVRow(obj, rec)} {
				out, err := Normalize(obj, r, now)
				if err != nil {
					var re *RejectError
					if !errors.As(err, &re) || re.Reason == "" {
						t.Fatalf("Normalize(%s, %s) = %v, want a *RejectError with a reason", obj, data, err)
					}
					continue
				}
				if !json.Valid(out) || len(out) >= MaxRecordBytes || bytes.ContainsAny(out, "\n") {
					t.Fatalf("Normalize(%s, %s) = %s: not one valid JSON line under the limit", obj, data, out)
				}
				again, err := Normalize(obj, decode(t, out), now)
				if err != nil || !bytes.Equal(again, out) {
					t.Fatalf("Normalize(%s, %s) = %s, but normalising that gives %s, %v", obj, data, out, again, err)
				}
			}
		}
	})
}
