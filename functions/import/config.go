package main

import (
	"strconv"

	"github.com/cebulk/cebulk/internal/importer"
	"github.com/cebulk/cebulk/internal/lambdaenv"
)

// maxChunkRecords bounds IMPORT_CHUNK_RECORDS: one CE job per chunk, and CE
// makes one Mixpanel call per record, so a chunk past a million records
// would outlive CE's job retention.
const maxChunkRecords = 1_000_000

// config is the ImportFunction's environment (template.yaml sets it).
type config struct {
	lambdaenv.Common
	CallbackURL  string
	ChunkRecords int
}

// loadConfig reads and checks the environment, reporting every problem at
// once. Values are never echoed for CALLBACK_URL, which is a public route
// but may be mistaken for one carrying a token.
func loadConfig(getenv func(string) string) (config, error) {
	var problems lambdaenv.Problems
	c := config{
		Common:       lambdaenv.ReadCommon(getenv, &problems),
		CallbackURL:  getenv("CALLBACK_URL"),
		ChunkRecords: importer.DefaultChunkRecords,
	}
	if c.CallbackURL != "" && !lambdaenv.AbsoluteHTTP(c.CallbackURL) {
		problems.Addf("CALLBACK_URL: want an absolute http or https URL, or nothing (poll only)")
	}
	if v := getenv("IMPORT_CHUNK_RECORDS"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > maxChunkRecords {
			problems.Addf("IMPORT_CHUNK_RECORDS=%q: want a whole number of records from 1 to %d", v, maxChunkRecords)
		}
		c.ChunkRecords = n
	}
	if err := problems.Err(); err != nil {
		return config{}, err
	}
	return c, nil
}
