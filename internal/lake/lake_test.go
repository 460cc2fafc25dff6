package lake_test

import (
	"bytes"
	"compress/gzip"
	"os"
	"path/filepath"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/cebulk/cebulk/internal/lake"
	"github.com/cebulk/cebulk/internal/lake/laketest"
)

func TestTablesCheck(t *testing.T) {
	for _, tb := range lake.Tables {
		if err := tb.Check(); err != nil {
			t.Error(err)
		}
	}
	bad := lake.Table{Name: "bad", Columns: []lake.Column{
		{Name: "id", Type: "string", Key: "$id"},
		{Name: "s", Fields: []lake.Column{{Name: "id", Type: "string"}}},
		{Name: "n", Type: "number"},
	}}
	if err := bad.Check(); err == nil {
		t.Error("Check of a name mapped to two keys and an unknown type = nil, want an error")
	}
}

func TestTypes(t *testing.T) {
	a, _ := lake.Lookup(lake.Activities)
	var gotHive, gotDuck []string
	for _, c := range a.Columns {
		gotHive = append(gotHive, c.HiveType())
		gotDuck = append(gotDuck, c.DuckDBType())
	}
	if diff := cmp.Diff([]string{"string", "string", "struct<time:bigint,distinct_id:string,insert_id:string>"}, gotHive); diff != "" {
		t.Errorf("activities Hive types (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]string{"VARCHAR", "VARCHAR", `STRUCT("time" BIGINT, "distinct_id" VARCHAR, "insert_id" VARCHAR)`}, gotDuck); diff != "" {
		t.Errorf("activities DuckDB types (-want +got):\n%s", diff)
	}
	want := map[string]string{"case.insensitive": "FALSE", "ignore.malformed.json": "FALSE", "mapping.typed": "properties", "mapping.insert_id": "$insert_id"}
	if diff := cmp.Diff(want, a.SerDeParameters()); diff != "" {
		t.Errorf("activities SerDe parameters (-want +got):\n%s", diff)
	}
}

func write(t *testing.T, path string, data []byte) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
}

func gz(t *testing.T, s string) []byte {
	var b bytes.Buffer
	zw := gzip.NewWriter(&b)
	if _, err := zw.Write([]byte(s)); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// TestDuckDB reads a small bucket copy with DuckDB the way Athena reads it:
// marker files ignored, properties kept as written (case included), the
// typed struct pulled from it, numbers rendered as text in string columns,
// symlink tables read through their symlink files.
func TestDuckDB(t *testing.T) {
	eng := laketest.Engine(t)
	dir := t.TempDir()
	const bucket = "b"
	part := filepath.Join(dir, "exports", "activities", "dt=2026-11-25")
	write(t, filepath.Join(part, "part-1.jsonl.gz"), gz(t,
		`{"event":"Page View","properties":{"time":1764028800,"distinct_id":"user-4","$insert_id":"i-1","Plan":"pro"}}`+"\n"+
			`{"event":"Buy","properties":{"time":"1764028801","distinct_id":5}}`+"\n"))
	write(t, filepath.Join(part, "_manifest.json"), []byte(`{"records":2}`))
	write(t, filepath.Join(part, "_SUCCESS"), nil)
	write(t, filepath.Join(dir, "reports", "imports", "users", "a.csv", "summary.json"),
		[]byte(`{"importId":"import-1","object":"users","status":"PARTIAL","dryRun":false,"source":{"bucket":"b","key":"imports/users/a.csv","size":10},"records":8,"rejected":3,"ceJobs":[{"id":"j"}],"timings":{"totalSeconds":1.5}}`+"\n"))
	write(t, filepath.Join(dir, filepath.FromSlash(lake.IndexKey(lake.ImportSummary, "2026-11-26", "import-1"))),
		lake.Symlink(bucket, "reports/imports/users/a.csv/summary.json"))

	a, _ := lake.Lookup(lake.Activities)
	parts, err := lake.LocalPartitions(dir, bucket, a)
	if err != nil {
		t.Fatal(err)
	}
	if len(parts) != 1 || len(parts[0].Files) != 1 {
		t.Fatalf("activities partitions = %+v, want one with the part only", parts)
	}
	res, err := eng.Query(t.Context(), a.With(parts, "SELECT * FROM activities ORDER BY event"))
	if err != nil {
		t.Fatal(err)
	}
	wantTypes := []string{"VARCHAR", "VARCHAR", `STRUCT("time" BIGINT, "distinct_id" VARCHAR, "insert_id" VARCHAR)`, "VARCHAR"}
	if diff := cmp.Diff(wantTypes, res.Types); diff != "" {
		t.Errorf("types (-want +got):\n%s", diff)
	}
	want := [][]any{
		{"Buy", `{"time":"1764028801","distinct_id":5}`, map[string]any{"time": "1764028801", "distinct_id": "5", "insert_id": nil}, "2026-11-25"},
		{"Page View", `{"time":1764028800,"distinct_id":"user-4","$insert_id":"i-1","Plan":"pro"}`, map[string]any{"time": "1764028800", "distinct_id": "user-4", "insert_id": "i-1"}, "2026-11-25"},
	}
	if diff := cmp.Diff(want, res.Rows); diff != "" {
		t.Errorf("rows (-want +got):\n%s", diff)
	}

	s, _ := lake.Lookup(lake.ImportSummary)
	parts, err = lake.LocalPartitions(dir, bucket, s)
	if err != nil {
		t.Fatal(err)
	}
	res, err = eng.Query(t.Context(), s.With(parts, "SELECT import_id, status, rejected, source.key, dry_run, timings.total_seconds, dt FROM import_summaries"))
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([][]any{{"import-1", "PARTIAL", "3", "imports/users/a.csv", false, 1.5, "2026-11-26"}}, res.Rows); diff != "" {
		t.Errorf("import_summaries rows (-want +got):\n%s", diff)
	}

	r, _ := lake.Lookup(lake.ImportRejects)
	parts, err = lake.LocalPartitions(dir, bucket, r)
	if err != nil || parts != nil {
		t.Fatalf("import_rejects partitions = %v, %v; want none", parts, err)
	}
	res, err = eng.Query(t.Context(), r.With(nil, "SELECT count(*) FROM import_rejects"))
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([][]any{{"0"}}, res.Rows); diff != "" {
		t.Errorf("empty import_rejects (-want +got):\n%s", diff)
	}
}

func TestLocalPartitionsRejectsStrayFolders(t *testing.T) {
	dir := t.TempDir()
	write(t, filepath.Join(dir, "exports", "activities", "dt=2026-13-45", "part.jsonl.gz"), nil)
	a, _ := lake.Lookup(lake.Activities)
	if _, err := lake.LocalPartitions(dir, "b", a); err == nil {
		t.Error("a dt= folder outside the projection's format: no error")
	}
}

// TestMakefilePinsTheEngine checks that `make lake-engine` installs the
// version this package names.
func TestMakefilePinsTheEngine(t *testing.T) {
	b, err := os.ReadFile(filepath.Join("..", "..", "Makefile"))
	if err != nil {
		t.Fatal(err)
	}
	if want := "DUCKDB_NODE_API := " + lake.DuckDBVersion + "\n"; !bytes.Contains(b, []byte(want)) {
		t.Errorf("Makefile lacks %q", want)
	}
}
