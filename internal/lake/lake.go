// Package lake is the one definition of the data lake's tables: the Glue
// tables template.yaml declares (columns, Hive types, the OpenX JSON SerDe's
// key mappings, partitions and their projection) and the SQL a local DuckDB
// runs over the same files with the same columns and types. The template
// tests check the template against [Tables]; the demo and its test query the
// demo's bucket with [Table.DuckDBSelect].
//
// # What the SerDe can do
//
// Athena reads the JSON lines with the OpenX JSON SerDe
// (org.openx.data.jsonserde.JsonSerDe). It maps a column to a top-level key
// ("mapping.<column>" = key, looked up per column, so two columns may read
// the same key) and renders any JSON value read into a string column as
// JSON text. It cannot pull a nested key into a top-level column, so the
// typed fields of an event's properties are a struct column, typed, that
// reads the same properties object: typed.time, typed.distinct_id,
// typed.insert_id. "case.insensitive" is off so that the properties text
// keeps its keys as they are (the original SerDe lowercases every key when
// it is on); the mappings name every key that is not the column's name.
//
// # Import reports
//
// A report folder holds summary.json, rejects.jsonl.gz and ce-errors.jsonl
// side by side, and Athena reads every file of a table's folder. So the
// import report tables are symlink tables: ImportFunction writes, per
// import, a small text file under reports/lake/<table>/dt=<day>/ naming the
// one report object the table reads ([IndexKey]).
package lake

import (
	"fmt"
	"sort"
	"strings"
)

// Column is one column of a table, or one field of a struct column.
type Column struct {
	Name string // lower case, as Glue stores it
	// Type is the Hive type: string, bigint, int, double, boolean; a struct
	// column leaves it empty and lists Fields.
	Type   string
	Key    string   // the JSON key it reads, when not Name
	Fields []Column // the fields of a struct column
}

// HiveType returns the column's Hive type as Glue stores it.
func (c Column) HiveType() string {
	if len(c.Fields) == 0 {
		return c.Type
	}
	parts := make([]string, len(c.Fields))
	for i, f := range c.Fields {
		parts[i] = f.Name + ":" + f.HiveType()
	}
	return "struct<" + strings.Join(parts, ",") + ">"
}

// DuckDBType returns the type DuckDB gives the column.
func (c Column) DuckDBType() string {
	if len(c.Fields) > 0 {
		parts := make([]string, len(c.Fields))
		for i, f := range c.Fields {
			parts[i] = `"` + f.Name + `" ` + f.DuckDBType()
		}
		return "STRUCT(" + strings.Join(parts, ", ") + ")"
	}
	return duckTypes[c.Type]
}

var duckTypes = map[string]string{
	"string":  "VARCHAR",
	"bigint":  "BIGINT",
	"int":     "INTEGER",
	"double":  "DOUBLE",
	"boolean": "BOOLEAN",
}

func (c Column) key() string {
	if c.Key != "" {
		return c.Key
	}
	return c.Name
}

// Projection is a table's partition column and how Athena projects it.
type Projection struct {
	Column string // the partition column (a string)
	// Format is the Java DateTimeFormatter pattern of the values, and Go
	// the same layout for Go's time package.
	Format, Go string
	// Range is projection.<column>.range; Interval and Unit its step.
	Range    string
	Interval int
	Unit     string // DAYS, HOURS
}

// Table is one Glue table.
type Table struct {
	Name string // the Glue table name
	// Prefix is the folder of the table under the bucket; partitions are
	// Prefix + Column=value + "/".
	Prefix  string
	Columns []Column
	// Symlink tables read, in each partition, text files naming the
	// objects to read (Hive's SymlinkTextInputFormat).
	Symlink   bool
	Partition Projection
	Comment   string
}

// Hive names of the formats and the SerDe.
const (
	SerDe        = "org.openx.data.jsonserde.JsonSerDe"
	TextInput    = "org.apache.hadoop.mapred.TextInputFormat"
	SymlinkInput = "org.apache.hadoop.hive.ql.io.SymlinkTextInputFormat"
	TextOutput   = "org.apache.hadoop.hive.ql.io.HiveIgnoreKeyTextOutputFormat"
)

// InputFormat returns the table's Hive input format.
func (t Table) InputFormat() string {
	if t.Symlink {
		return SymlinkInput
	}
	return TextInput
}

// SerDeParameters returns the OpenX JSON SerDe's parameters: case
// sensitivity off, and a mapping for every column or field whose key is not
// its name. Mappings are shared by every level of nesting, so one name must
// not map to two keys ([Table.Check]).
func (t Table) SerDeParameters() map[string]string {
	p := map[string]string{"case.insensitive": "FALSE", "ignore.malformed.json": "FALSE"}
	var walk func(cols []Column)
	walk = func(cols []Column) {
		for _, c := range cols {
			if c.Key != "" && c.Key != c.Name {
				p["mapping."+c.Name] = c.Key
			}
			walk(c.Fields)
		}
	}
	walk(t.Columns)
	return p
}

// Check reports a definition the SerDe would read differently from
// DuckDBSelect: a name mapped to two keys, or a name at one level that is
// mapped at another.
func (t Table) Check() error {
	keys := map[string]string{}
	var errs []string
	var walk func(cols []Column)
	walk = func(cols []Column) {
		for _, c := range cols {
			if k, ok := keys[c.Name]; ok && k != c.key() {
				errs = append(errs, fmt.Sprintf("%s: %s reads %q and %q (SerDe mappings are shared by all levels)", t.Name, c.Name, k, c.key()))
			}
			keys[c.Name] = c.key()
			if len(c.Fields) == 0 && duckTypes[c.Type] == "" {
				errs = append(errs, fmt.Sprintf("%s: %s has type %q", t.Name, c.Name, c.Type))
			}
			walk(c.Fields)
		}
	}
	walk(t.Columns)
	if len(errs) > 0 {
		return fmt.Errorf("%s", strings.Join(errs, "; "))
	}
	return nil
}

// TableParameters returns the Glue table parameters: the classification
// and the partition projection, with storage.location.template under
// location (s3://bucket/ + Prefix).
func (t Table) TableParameters(location string) map[string]string {
	c := t.Partition.Column
	return map[string]string{
		"classification":                     "json",
		"projection.enabled":                 "true",
		"projection." + c + ".type":          "date",
		"projection." + c + ".format":        t.Partition.Format,
		"projection." + c + ".range":         t.Partition.Range,
		"projection." + c + ".interval":      fmt.Sprint(t.Partition.Interval),
		"projection." + c + ".interval.unit": t.Partition.Unit,
		"storage.location.template":          location + c + "=${" + c + "}/",
	}
}

// Columns of the import summary table, the keys of summary.json.
var summaryColumns = []Column{
	{Name: "import_id", Type: "string", Key: "importId"},
	{Name: "object", Type: "string"},
	{Name: "status", Type: "string"},
	{Name: "reason", Type: "string"},
	{Name: "dry_run", Type: "boolean", Key: "dryRun"},
	{Name: "format", Type: "string"},
	{Name: "source", Fields: []Column{
		{Name: "bucket", Type: "string"},
		{Name: "key", Type: "string"},
		{Name: "etag", Type: "string"},
		{Name: "size", Type: "bigint"},
	}},
	{Name: "records", Type: "bigint"},
	{Name: "valid", Type: "bigint"},
	{Name: "rejected", Type: "bigint"},
	{Name: "sent", Type: "bigint"},
	{Name: "accepted", Type: "bigint"},
	{Name: "ce_failed", Type: "bigint", Key: "ceFailed"},
	{Name: "not_sent", Type: "bigint", Key: "notSent"},
	{Name: "ce_jobs", Type: "string", Key: "ceJobs"},
	{Name: "timings", Fields: []Column{
		{Name: "started_at", Type: "string", Key: "startedAt"},
		{Name: "finished_at", Type: "string", Key: "finishedAt"},
		{Name: "total_seconds", Type: "double", Key: "totalSeconds"},
	}},
}

// dayPartition is a dt=YYYY-MM-DD partition over the last ten years.
var dayPartition = Projection{
	Column: "dt", Format: "yyyy-MM-dd", Go: "2006-01-02",
	Range: "NOW-10YEARS,NOW", Interval: 1, Unit: "DAYS",
}

// Table names.
const (
	Activities    = "activities"
	Users         = "users"
	ImportSummary = "import_summaries"
	ImportRejects = "import_rejects"
)

// indexPrefix is the folder of the symlink tables' files.
const indexPrefix = "reports/lake/"

// Tables are the lake's tables, in the order the template declares them.
var Tables = []Table{
	{
		Name:    Activities,
		Prefix:  "exports/activities/",
		Comment: "Mixpanel events exported by cebulk, one JSON line each as CE sent it; dt is the day in EXPORT_TIMEZONE.",
		Columns: []Column{
			{Name: "event", Type: "string"},
			{Name: "properties", Type: "string"},
			{Name: "typed", Key: "properties", Fields: []Column{
				{Name: "time", Type: "bigint"},
				{Name: "distinct_id", Type: "string"},
				{Name: "insert_id", Type: "string", Key: "$insert_id"},
			}},
		},
		Partition: dayPartition,
	},
	{
		Name:    Users,
		Prefix:  "exports/users/",
		Comment: "Mixpanel people profiles, one snapshot per export run; snapshot is the run's hour (UTC).",
		Columns: []Column{
			{Name: "distinct_id", Type: "string", Key: "$distinct_id"},
			{Name: "properties", Type: "string", Key: "$properties"},
		},
		Partition: Projection{
			Column: "snapshot", Format: "yyyy-MM-dd'T'HHmmss'Z'", Go: "2006-01-02T150405Z",
			Range: "NOW-1YEARS,NOW", Interval: 1, Unit: "HOURS",
		},
	},
	{
		Name:      ImportSummary,
		Prefix:    indexPrefix + ImportSummary + "/",
		Comment:   "One row per finished import (its summary.json); dt is the day it finished (UTC).",
		Symlink:   true,
		Columns:   summaryColumns,
		Partition: dayPartition,
	},
	{
		Name:    ImportRejects,
		Prefix:  indexPrefix + ImportRejects + "/",
		Comment: "Rows an import did not send (its rejects.jsonl.gz); \"$path\" names the report; dt is the day it finished (UTC).",
		Symlink: true,
		Columns: []Column{
			{Name: "line", Type: "bigint"},
			{Name: "reason", Type: "string"},
			{Name: "record", Type: "string"},
		},
		Partition: dayPartition,
	},
}

// Lookup returns the table named name.
func Lookup(name string) (Table, bool) {
	for _, t := range Tables {
		if t.Name == name {
			return t, true
		}
	}
	return Table{}, false
}

// IndexKey returns the key of the symlink file of a symlink table that
// names one import's report object: reports/lake/<table>/dt=<day>/<id>.txt.
func IndexKey(table, day, importID string) string {
	return indexPrefix + table + "/dt=" + day + "/" + importID + ".txt"
}

// Symlink returns the content of a symlink file naming s3://bucket/key.
func Symlink(bucket, key string) []byte {
	return fmt.Appendf(nil, "s3://%s/%s\n", bucket, key)
}

// Partition is one partition's value and the JSON lines files (gzip or
// not) it reads: for a symlink table, the objects its symlink files name.
type Partition struct {
	Value string
	Files []string
}

// DuckDBSelect returns a DuckDB query giving the table's columns, with the
// table's types, and its partition column (a string), over parts (at least
// one). Files are read as Athena reads them: each line one JSON object,
// keys matched exactly.
func (t Table) DuckDBSelect(parts []Partition) string {
	var keys []string
	seen := map[string]bool{}
	for _, c := range t.Columns {
		if !seen[c.key()] {
			seen[c.key()] = true
			keys = append(keys, c.key())
		}
	}
	sort.Strings(keys)
	read := make([]string, len(keys))
	for i, k := range keys {
		read[i] = sqlString(k) + ": 'JSON'"
	}
	sel := make([]string, 0, len(t.Columns)+1)
	for _, c := range t.Columns {
		sel = append(sel, duckValue(c, ident(c.key()), "$")+" AS "+ident(c.Name))
	}
	selects := make([]string, len(parts))
	for i, p := range parts {
		quoted := make([]string, len(p.Files))
		for j, f := range p.Files {
			quoted[j] = sqlString(f)
		}
		selects[i] = "SELECT " + strings.Join(sel, ", ") + ", " + sqlString(p.Value) + " AS " + ident(t.Partition.Column) +
			" FROM read_json([" + strings.Join(quoted, ", ") + "], format = 'newline_delimited', compression = 'auto_detect'," +
			" columns = {" + strings.Join(read, ", ") + "})"
	}
	return strings.Join(selects, " UNION ALL ")
}

// duckValue is the expression reading column c at path of the JSON value
// src.
func duckValue(c Column, src, path string) string {
	if len(c.Fields) > 0 {
		parts := make([]string, len(c.Fields))
		for i, f := range c.Fields {
			parts[i] = ident(f.Name) + " := " + duckValue(f, src, path+"."+jsonPathKey(f.key()))
		}
		return "struct_pack(" + strings.Join(parts, ", ") + ")"
	}
	text := "json_extract_string(" + src + ", " + sqlString(path) + ")"
	if c.Type == "string" {
		return text
	}
	return "TRY_CAST(" + text + " AS " + duckTypes[c.Type] + ")"
}

func jsonPathKey(k string) string { return `"` + strings.ReplaceAll(k, `"`, `\"`) + `"` }

func ident(s string) string { return `"` + strings.ReplaceAll(s, `"`, `""`) + `"` }

func sqlString(s string) string { return "'" + strings.ReplaceAll(s, "'", "''") + "'" }
