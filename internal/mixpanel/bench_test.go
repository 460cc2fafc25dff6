package mixpanel

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"testing"

	"github.com/cebulk/cebulk/internal/recordio"
)

func benchEvent(i int, withID bool) map[string]any {
	props := map[string]any{
		"time":        json.Number(fmt.Sprint(1700000000 + i)),
		"distinct_id": fmt.Sprintf("user-%d", i%1000),
		"plan":        "pro",
		"amount":      json.Number("12.99"),
		"$browser":    "Chrome",
		"$city":       "San Francisco",
		"utm_source":  "newsletter",
		"items":       []any{"a", "b"},
		"cart":        map[string]any{"size": json.Number("2"), "coupon": nil},
	}
	if withID {
		props["$insert_id"] = fmt.Sprintf("id-%d", i)
	}
	return map[string]any{"event": "Purchase", "properties": props}
}

func benchmarkNormalize(b *testing.B, obj Object, recs []map[string]any) {
	b.ReportAllocs()
	n := 0
	for b.Loop() {
		if _, err := Normalize(obj, recs[n%len(recs)], now); err != nil {
			b.Fatal(err)
		}
		n++
	}
	b.ReportMetric(float64(n)/b.Elapsed().Seconds(), "records/s")
}

func BenchmarkNormalizeActivities(b *testing.B) {
	for _, withID := range []bool{true, false} {
		name := "derived_insert_id"
		if withID {
			name = "given_insert_id"
		}
		b.Run(name, func(b *testing.B) {
			recs := make([]map[string]any, 1000)
			for i := range recs {
				recs[i] = benchEvent(i, withID)
			}
			benchmarkNormalize(b, Activities, recs)
		})
	}
}

func BenchmarkNormalizeUsers(b *testing.B) {
	recs := make([]map[string]any, 1000)
	for i := range recs {
		recs[i] = map[string]any{
			"$distinct_id": fmt.Sprintf("user-%d", i),
			"$set": map[string]any{"$email": fmt.Sprintf("u%d@example.com", i), "$name": "Ada", "plan": "pro",
				"credits": json.Number("150"), "vip": true},
			"$set_once": map[string]any{"first_seen": "2024-01-02T00:00:00Z"},
		}
	}
	benchmarkNormalize(b, Users, recs)
}

// BenchmarkValidateFile runs 1e5 generated rows through recordio and
// Normalize, as the importer does, and reports records/s.
func BenchmarkValidateFile(b *testing.B) {
	const rows = 100000
	var jsonl, csv bytes.Buffer
	csv.WriteString("event,time,distinct_id,plan,amount,$browser,$city,utm_source\n")
	for i := range rows {
		line, err := json.Marshal(benchEvent(i, false))
		if err != nil {
			b.Fatal(err)
		}
		jsonl.Write(line)
		jsonl.WriteByte('\n')
		fmt.Fprintf(&csv, "Purchase,%d,user-%d,pro,12.99,Chrome,San Francisco,newsletter\n", 1700000000+i, i%1000)
	}
	for _, f := range []struct {
		name    string
		content []byte
	}{{"events.jsonl", jsonl.Bytes()}, {"events.csv", csv.Bytes()}} {
		b.Run(f.name, func(b *testing.B) {
			b.SetBytes(int64(len(f.content)))
			b.ReportAllocs()
			records := 0
			for b.Loop() {
				rd, err := recordio.Open(bytes.NewReader(f.content), f.name, recordio.Options{CSVShape: Activities.CSVShape})
				if err != nil {
					b.Fatal(err)
				}
				for {
					it, err := rd.Next()
					if err == io.EOF {
						break
					}
					if err != nil || it.Err != nil {
						b.Fatalf("Next() = %v, %v", err, it.Err)
					}
					if _, err := Normalize(Activities, it.Record, now); err != nil {
						b.Fatal(err)
					}
					records++
				}
			}
			if records%rows != 0 {
				b.Fatalf("validated %d records, want a multiple of %d", records, rows)
			}
			b.ReportMetric(float64(records)/b.Elapsed().Seconds(), "records/s")
		})
	}
}
