package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/cebulk/cebulk/internal/lake"
	"github.com/cebulk/cebulk/internal/lake/laketest"
)

// checkLake reads the demo's bucket copy with DuckDB, as Athena reads it
// with the tables template.yaml declares: every table gives its columns
// with their declared types; each export partition has as many rows as its
// manifest says, each event inside the partition's window with a
// distinct_id and an $insert_id; the import tables hold the demo import's
// summary and its rejects.
func checkLake(t *testing.T, bucket string) {
	t.Helper()
	eng := laketest.Engine(t)
	for _, tb := range lake.Tables {
		parts, err := lake.LocalPartitions(bucket, demoBucket, tb)
		if err != nil {
			t.Fatalf("%s: %v", tb.Name, err)
		}
		if len(parts) == 0 {
			t.Errorf("%s: no partition in the demo's bucket", tb.Name)
			continue
		}
		col := tb.Partition.Column
		res, err := eng.Query(t.Context(), tb.With(parts, fmt.Sprintf(`SELECT * FROM %q`, tb.Name)))
		if err != nil {
			t.Fatalf("%s: %v", tb.Name, err)
		}
		var want []string
		for _, c := range tb.Columns {
			want = append(want, c.Name+" "+c.DuckDBType())
		}
		want = append(want, col+" VARCHAR")
		var got []string
		for i, c := range res.Columns {
			got = append(got, c+" "+res.Types[i])
		}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("%s columns (-template +DuckDB):\n%s", tb.Name, diff)
		}

		counts := map[string]int64{}
		for _, row := range res.Rows {
			counts[row[len(row)-1].(string)]++
		}
		switch tb.Name {
		case lake.Activities, lake.Users:
			wantCounts := map[string]int64{}
			for _, p := range parts {
				var m struct {
					Records int64 `json:"records"`
					Window  struct{ From, To time.Time }
				}
				readJSON(t, filepath.Join(bucket, filepath.FromSlash(tb.Prefix), col+"="+p.Value, "_manifest.json"), &m)
				wantCounts[p.Value] = m.Records
				if tb.Name == lake.Activities {
					checkEvents(t, eng, tb, p, m.Window.From, m.Window.To)
				}
			}
			if diff := cmp.Diff(wantCounts, counts); diff != "" {
				t.Errorf("%s rows per partition (-manifests +DuckDB):\n%s", tb.Name, diff)
			}
			for _, row := range res.Rows {
				for i, v := range row {
					if v == nil {
						t.Errorf("%s row %v: %s is NULL; the table does not read the key it should", tb.Name, row, res.Columns[i])
						break
					}
				}
			}
		case lake.ImportSummary:
			sel := `SELECT status, records, valid, rejected, sent, source.key FROM import_summaries`
			r, err := eng.Query(t.Context(), tb.With(parts, sel))
			if err != nil {
				t.Fatal(err)
			}
			want := [][]any{{"PARTIAL", "8", "5", "3", "5", "imports/users/demo-users.csv"}}
			if diff := cmp.Diff(want, r.Rows); diff != "" {
				t.Errorf("import_summaries (-want +got):\n%s", diff)
			}
		case lake.ImportRejects:
			if n := len(res.Rows); n != 3 {
				t.Errorf("import_rejects rows = %d, want the 3 rejected", n)
			}
			for _, row := range res.Rows {
				if row[0] == nil || row[1] == nil || row[2] == nil {
					t.Errorf("reject %v: want its line, reason and record", row)
				}
			}
		}
	}
}

// checkEvents checks one activities partition: every event's typed.time in
// the window, and a distinct_id and an insert_id on each.
func checkEvents(t *testing.T, eng *lake.Engine, tb lake.Table, p lake.Partition, from, to time.Time) {
	t.Helper()
	sel := fmt.Sprintf(`SELECT count(*) FILTER (WHERE typed.time < %d OR typed.time >= %d OR typed.time IS NULL),
		count(*) FILTER (WHERE typed.distinct_id IS NULL OR typed.insert_id IS NULL OR event IS NULL),
		count(*) FILTER (WHERE json_extract_string(properties, '$.distinct_id') <> typed.distinct_id) FROM activities`, from.Unix(), to.Unix())
	r, err := eng.Query(t.Context(), tb.With([]lake.Partition{p}, sel))
	if err != nil {
		t.Fatal(err)
	}
	if want := [][]any{{"0", "0", "0"}}; !slices.EqualFunc(want[0], r.Rows[0], func(a, b any) bool { return a == b }) {
		t.Errorf("dt=%s: events outside [%v, %v), without ids, or whose typed.distinct_id differs from properties = %v, want none", p.Value, from, to, r.Rows[0])
	}
}

// checkDemoMetrics checks the EMF lines the demo's functions wrote to
// their logs: records published per partition, the watermark's age falling
// to under a day once the three days are in, and the import's row counts.
func checkDemoMetrics(t *testing.T, logs string) {
	t.Helper()
	emf := func(name string) []map[string]any {
		b, err := os.ReadFile(filepath.Join(logs, name))
		if err != nil {
			t.Fatal(err)
		}
		var out []map[string]any
		for _, line := range bytes.Split(b, []byte("\n")) {
			var m map[string]any
			if json.Unmarshal(line, &m) == nil && m["_aws"] != nil {
				out = append(out, m)
			}
		}
		return out
	}
	published := map[string]float64{}
	var ages []float64
	for _, m := range emf("cebulk-export.log") {
		obj, _ := m["Object"].(string)
		if v, ok := m["RecordsPublished"].(float64); ok {
			published[obj] += v
		}
		if v, ok := m["WatermarkAgeHours"].(float64); ok {
			ages = append(ages, v)
		}
	}
	if diff := cmp.Diff(map[string]float64{"activities": 1500, "users": 40}, published); diff != "" {
		t.Errorf("RecordsPublished by object (-want +got):\n%s", diff)
	}
	if len(ages) == 0 || ages[len(ages)-1] >= 24 {
		t.Errorf("WatermarkAgeHours = %v, want the last under 24 hours (yesterday exported)", ages)
	}
	var rows []map[string]any
	for _, m := range emf("cebulk-import.log") {
		if _, ok := m["RowsSent"]; ok {
			delete(m, "_aws")
			delete(m, "level")
			delete(m, "timestamp")
			rows = append(rows, m)
		}
	}
	want := []map[string]any{{"Function": "import", "Object": "users", "RowsSent": 5.0, "RowsRejected": 3.0, "RowsCERejected": 0.0}}
	if diff := cmp.Diff(want, rows); diff != "" {
		t.Errorf("import row metrics (-want +got):\n%s", diff)
	}
}

// TestQueryLakeWithoutEngine: without DuckDB the demo prints the Athena
// queries and how to install the engine, and does not fail.
func TestQueryLakeWithoutEngine(t *testing.T) {
	t.Setenv("CEBULK_DUCKDB", t.TempDir()) // no @duckdb/node-api there
	var out bytes.Buffer
	d := &demo{w: &out, out: t.TempDir()}
	if err := d.queryLake(t.Context(), t.TempDir()); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"make lake-engine", "FROM " + demoDatabase + ".activities GROUP BY dt"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %q:\n%s", want, out.String())
		}
	}
}
