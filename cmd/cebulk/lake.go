package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/cebulk/cebulk/internal/lake"
)

// lakeQuery is a query a user runs in Athena, written with %s for the
// table, which the demo also runs on the local engine over the bucket copy.
type lakeQuery struct {
	title, table, sql string
}

var demoQueries = []lakeQuery{
	{"events per day", lake.Activities,
		"SELECT dt, count(*) AS events, count(DISTINCT typed.distinct_id) AS people, min(typed.time) AS first_time, max(typed.time) AS last_time FROM %s GROUP BY dt ORDER BY dt"},
	{"imports", lake.ImportSummary,
		"SELECT dt, object, status, records, sent, rejected, ce_failed, source.key AS source FROM %s ORDER BY dt, source.key"},
}

// demoDatabase is the Glue database a stack named cebulk gets.
const demoDatabase = "cebulk_lake"

// queryLake prints each demo query as a user would run it in Athena and its
// result on DuckDB over the bucket copy in dir. Without the local engine it
// says how to install it instead.
func (d *demo) queryLake(ctx context.Context, dir string) error {
	wd, err := os.Getwd()
	if err != nil {
		return err
	}
	eng, err := lake.FindEngine(wd)
	if errors.Is(err, lake.ErrNoEngine) {
		d.say("%v; then run the demo again to see the queries' results here", err)
		for _, q := range demoQueries {
			d.say("Athena (workgroup cebulk-lake), %s:\n      %s", q.title, fmt.Sprintf(q.sql, demoDatabase+"."+q.table))
		}
		return nil
	}
	if err != nil {
		return err
	}
	for _, q := range demoQueries {
		t, _ := lake.Lookup(q.table)
		parts, err := lake.LocalPartitions(dir, demoBucket, t)
		if err != nil {
			return err
		}
		res, err := eng.Query(ctx, t.With(parts, fmt.Sprintf(q.sql, `"`+t.Name+`"`)))
		if err != nil {
			return err
		}
		d.say("Athena (workgroup cebulk-lake), %s:\n      %s", q.title, fmt.Sprintf(q.sql, demoDatabase+"."+q.table))
		d.say("the same query on DuckDB over %s (%d partitions):", rel(d.out, dir), len(parts))
		for _, line := range formatTable(res) {
			d.say("  %s", line)
		}
	}
	return nil
}

// formatTable renders a result as aligned text columns.
func formatTable(r *lake.Result) []string {
	cells := [][]string{r.Columns}
	for _, row := range r.Rows {
		line := make([]string, len(row))
		for i, v := range row {
			line[i] = fmt.Sprint(v)
			if v == nil {
				line[i] = "NULL"
			}
		}
		cells = append(cells, line)
	}
	width := make([]int, len(r.Columns))
	for _, row := range cells {
		for i, c := range row {
			width[i] = max(width[i], len(c))
		}
	}
	out := make([]string, len(cells))
	for n, row := range cells {
		var b strings.Builder
		for i, c := range row {
			fmt.Fprintf(&b, "%-*s  ", width[i], c)
		}
		out[n] = strings.TrimRight(b.String(), " ")
	}
	return out
}
