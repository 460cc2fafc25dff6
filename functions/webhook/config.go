package main

import (
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"strings"

	"github.com/cebulk/cebulk/internal/logging"
)

// config is the WebhookFunction's environment (template.yaml sets it).
type config struct {
	CEBaseURL      string
	SecretID       string
	Bucket         string
	ExportFunction string
	ImportFunction string
	MaxExportDays  int
	LogLevel       slog.Level
}

// loadConfig reads and checks the environment, reporting every problem at
// once.
func loadConfig(getenv func(string) string) (config, error) {
	var problems []string
	c := config{
		CEBaseURL:      getenv("CE_BASE_URL"),
		SecretID:       getenv("CE_SECRET_ID"),
		Bucket:         getenv("DATA_BUCKET"),
		ExportFunction: getenv("EXPORT_FUNCTION_NAME"),
		ImportFunction: getenv("IMPORT_FUNCTION_NAME"),
		MaxExportDays:  31,
	}
	if c.CEBaseURL == "" {
		c.CEBaseURL = "https://api.cloud-elements.com/elements/api-v2"
	}
	for name, v := range map[string]string{"CE_SECRET_ID": c.SecretID, "DATA_BUCKET": c.Bucket, "EXPORT_FUNCTION_NAME": c.ExportFunction, "IMPORT_FUNCTION_NAME": c.ImportFunction} {
		if v == "" {
			problems = append(problems, name+" is required")
		}
	}
	if v := getenv("EXPORT_MAX_DAYS"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 366 {
			problems = append(problems, fmt.Sprintf("EXPORT_MAX_DAYS=%q: want a whole number of days from 1 to 366", v))
		}
		c.MaxExportDays = n
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
