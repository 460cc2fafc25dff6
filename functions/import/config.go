package main

import (
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"slices"
	"strconv"
	"strings"

	"github.com/cebulk/cebulk/internal/importer"
	"github.com/cebulk/cebulk/internal/logging"
)

// maxChunkRecords bounds IMPORT_CHUNK_RECORDS: one CE job per chunk, and CE
// makes one Mixpanel call per record, so a chunk past a million records
// would outlive CE's job retention.
const maxChunkRecords = 1_000_000

// config is the ImportFunction's environment (template.yaml sets it).
type config struct {
	CEBaseURL    string
	SecretID     string
	Bucket       string
	CallbackURL  string
	ChunkRecords int
	LogLevel     slog.Level
}

// loadConfig reads and checks the environment, reporting every problem at
// once. Values are never echoed for CALLBACK_URL, which is a public route
// but may be mistaken for one carrying a token.
func loadConfig(getenv func(string) string) (config, error) {
	var problems []string
	c := config{
		CEBaseURL:    getenv("CE_BASE_URL"),
		SecretID:     getenv("CE_SECRET_ID"),
		Bucket:       getenv("DATA_BUCKET"),
		CallbackURL:  getenv("CALLBACK_URL"),
		ChunkRecords: importer.DefaultChunkRecords,
	}
	if c.CEBaseURL == "" {
		c.CEBaseURL = "https://api.cloud-elements.com/elements/api-v2"
	} else if !absoluteHTTP(c.CEBaseURL) {
		problems = append(problems, fmt.Sprintf("CE_BASE_URL=%q: want an absolute http or https URL", c.CEBaseURL))
	}
	if c.SecretID == "" {
		problems = append(problems, "CE_SECRET_ID is required")
	}
	if c.Bucket == "" {
		problems = append(problems, "DATA_BUCKET is required")
	}
	if c.CallbackURL != "" && !absoluteHTTP(c.CallbackURL) {
		problems = append(problems, "CALLBACK_URL: want an absolute http or https URL, or nothing (poll only)")
	}
	if v := getenv("IMPORT_CHUNK_RECORDS"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > maxChunkRecords {
			problems = append(problems, fmt.Sprintf("IMPORT_CHUNK_RECORDS=%q: want a whole number of records from 1 to %d", v, maxChunkRecords))
		}
		c.ChunkRecords = n
	}
	level, err := logging.ParseLevel(getenv("LOG_LEVEL"))
	if err != nil {
		problems = append(problems, err.Error())
	}
	c.LogLevel = level
	if len(problems) > 0 {
		slices.Sort(problems)
		return config{}, errors.New("configuration: " + strings.Join(problems, "; "))
	}
	return c, nil
}

func absoluteHTTP(raw string) bool {
	u, err := url.Parse(raw)
	return err == nil && (u.Scheme == "https" || u.Scheme == "http") && u.Host != ""
}
