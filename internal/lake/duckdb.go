package lake

import (
	"bytes"
	"context"
	_ "embed"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// DuckDBVersion is the @duckdb/node-api version `make lake-engine` installs
// (into .tools/duckdb, git-ignored) for the demo and the tests.
const DuckDBVersion = "1.5.6-r.1"

// EngineDir is where `make lake-engine` installs @duckdb/node-api, relative
// to the module root.
const EngineDir = ".tools/duckdb/node_modules/@duckdb/node-api"

// ErrNoEngine reports that node or @duckdb/node-api is not installed.
var ErrNoEngine = errors.New("the local SQL engine is not installed: run `make lake-engine` (npm install of @duckdb/node-api " + DuckDBVersion + " into .tools/duckdb)")

//go:embed duckdb.mjs
var duckdbScript []byte

// Engine runs SQL on DuckDB through node and @duckdb/node-api.
type Engine struct {
	node, module string
}

// FindEngine returns the engine the CEBULK_DUCKDB environment variable
// names (the folder of @duckdb/node-api), or else the one installed under
// the module root (the first folder from dir upwards holding go.mod);
// ErrNoEngine when there is none.
func FindEngine(dir string) (*Engine, error) {
	node, err := exec.LookPath("node")
	if err != nil {
		return nil, fmt.Errorf("%w (node is not on PATH)", ErrNoEngine)
	}
	mod := os.Getenv("CEBULK_DUCKDB")
	for d := dir; mod == ""; d = filepath.Dir(d) {
		if _, err := os.Stat(filepath.Join(d, "go.mod")); err == nil {
			mod = filepath.Join(d, filepath.FromSlash(EngineDir))
		} else if filepath.Dir(d) == d {
			return nil, fmt.Errorf("%w (no go.mod above %s)", ErrNoEngine, dir)
		}
	}
	dir = mod
	if _, err := os.Stat(filepath.Join(dir, "package.json")); err != nil {
		return nil, fmt.Errorf("%w (no %s)", ErrNoEngine, dir)
	}
	return &Engine{node: node, module: dir}, nil
}

// Result is a query's result: column names, DuckDB types and rows as JSON
// values (BIGINT as strings, structs as objects).
type Result struct {
	Columns []string `json:"columns"`
	Types   []string `json:"types"`
	Rows    [][]any  `json:"rows"`
}

// Query runs sql and returns its result.
func (e *Engine) Query(ctx context.Context, sql string) (*Result, error) {
	cmd := exec.CommandContext(ctx, e.node, "--input-type=module", "-e", string(duckdbScript))
	cmd.Env = append(os.Environ(), "CEBULK_DUCKDB="+e.module)
	cmd.Stdin = strings.NewReader(sql)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("duckdb: %v: %s", err, strings.TrimSpace(stderr.String()))
	}
	var r Result
	if err := json.Unmarshal(stdout.Bytes(), &r); err != nil {
		return nil, fmt.Errorf("duckdb: decode result: %v", err)
	}
	return &r, nil
}
