package importer_test

import (
	"bytes"
	"encoding/json"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/cebulk/cebulk/internal/lake"
)

// TestReportsForTheLake checks what the lake reads of a finished import:
// summary.json on one line (Athena's JSON SerDes read one object a line),
// the symlink files of the import_summaries and import_rejects tables in
// the partition of the day it finished, and one EMF line with its row
// counts.
func TestReportsForTheLake(t *testing.T) {
	e := setup(t, envOptions{})
	data, bad := jsonlFile(7) // 7 good rows, 2 bad
	key := "imports/activities/lake.jsonl"
	res := e.importFile(key, data)

	summary, _ := e.store.get(bucket, "reports/"+key+"/summary.json")
	if n := bytes.Count(summary, []byte("\n")); n != 1 || !bytes.HasSuffix(summary, []byte("}\n")) {
		t.Errorf("summary.json has %d lines, want one JSON object on one line:\n%s", n, summary)
	}
	day := t0.Format("2006-01-02")
	for table, obj := range map[string]string{lake.ImportSummary: "summary.json", lake.ImportRejects: "rejects.jsonl.gz"} {
		got, ok := e.store.get(bucket, lake.IndexKey(table, day, res.ImportID))
		if want := "s3://" + bucket + "/reports/" + key + "/" + obj + "\n"; !ok || string(got) != want {
			t.Errorf("%s symlink file = %q (found %v), want %q", table, got, ok, want)
		}
	}

	var rows []map[string]any
	for _, line := range bytes.Split(bytes.TrimSpace(e.metrics.Bytes()), []byte("\n")) {
		var m map[string]any
		if err := json.Unmarshal(line, &m); err != nil {
			t.Fatalf("metric line %q: %v", line, err)
		}
		if _, ok := m["RowsSent"]; ok {
			delete(m, "_aws")
			delete(m, "level")
			delete(m, "timestamp")
			rows = append(rows, m)
		}
	}
	want := []map[string]any{{"Function": "import", "Object": "activities", "RowsSent": float64(7), "RowsRejected": float64(len(bad)), "RowsCERejected": float64(0)}}
	if diff := cmp.Diff(want, rows); diff != "" {
		t.Errorf("row metrics (-want +got):\n%s", diff)
	}
}
