package main

import (
	"github.com/cebulk/cebulk/internal/importer"
	"github.com/cebulk/cebulk/internal/lambdaenv"
)

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
		Common:      lambdaenv.ReadCommon(getenv, &problems),
		CallbackURL: getenv("CALLBACK_URL"),
	}
	if c.CallbackURL != "" && !lambdaenv.AbsoluteHTTP(c.CallbackURL) {
		problems.Addf("CALLBACK_URL: want an absolute http or https URL, or nothing (poll only)")
	}
	var err error
	if c.ChunkRecords, err = importer.ParseChunkRecords(getenv("IMPORT_CHUNK_RECORDS")); err != nil {
		problems.Addf("IMPORT_CHUNK_RECORDS=%v", err)
	}
	if c.Backend == lambdaenv.BackendMixpanel {
		// Mixpanel's APIs answer synchronously: nothing calls back.
		c.CallbackURL = ""
	}
	if err := problems.Err(); err != nil {
		return config{}, err
	}
	return c, nil
}
