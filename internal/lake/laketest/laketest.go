// Package laketest gives tests the lake's query engine (DuckDB under
// node, installed by make test into .tools/), apart from internal/lake so
// that the functions, which link internal/lake, do not link package testing.
package laketest

import (
	"os"
	"testing"

	"github.com/cebulk/cebulk/internal/lake"
)

// Engine returns the engine for a test: it skips the test when none is
// installed, and fails it under `make test` (CEBULK_STACK set), which
// installs one.
func Engine(t testing.TB) *lake.Engine {
	t.Helper()
	wd, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	e, err := lake.FindEngine(wd)
	if err != nil {
		if os.Getenv("CEBULK_STACK") != "" {
			t.Fatal(err)
		}
		t.Skip(err)
	}
	return e
}
