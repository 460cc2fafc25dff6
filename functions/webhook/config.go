package main

import (
	"strconv"

	"github.com/cebulk/cebulk/internal/exporter"
	"github.com/cebulk/cebulk/internal/lambdaenv"
)

// config is the WebhookFunction's environment (template.yaml sets it).
type config struct {
	lambdaenv.Common
	ExportFunction string
	ImportFunction string
	MaxExportDays  int
}

// loadConfig reads and checks the environment, reporting every problem at
// once.
func loadConfig(getenv func(string) string) (config, error) {
	var problems lambdaenv.Problems
	c := config{
		Common:         lambdaenv.ReadCommon(getenv, &problems),
		ExportFunction: getenv("EXPORT_FUNCTION_NAME"),
		ImportFunction: getenv("IMPORT_FUNCTION_NAME"),
		MaxExportDays:  exporter.MaxRunDays,
	}
	if c.ExportFunction == "" {
		problems.Addf("EXPORT_FUNCTION_NAME is required")
	}
	if c.ImportFunction == "" {
		problems.Addf("IMPORT_FUNCTION_NAME is required")
	}
	if v := getenv("EXPORT_MAX_DAYS"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > exporter.MaxRunDays {
			problems.Addf("EXPORT_MAX_DAYS=%q: want a whole number of days from 1 to %d (three years)", v, exporter.MaxRunDays)
		}
		c.MaxExportDays = n
	}
	if err := problems.Err(); err != nil {
		return config{}, err
	}
	return c, nil
}
