package main

import (
	"log/slog"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/cebulk/cebulk/internal/lambdaenv"
)

func TestLoadConfig(t *testing.T) {
	base := map[string]string{
		"CE_SECRET_ID": "arn:aws:secretsmanager:us-east-1:123456789012:secret:cebulk-AbCdEf",
		"DATA_BUCKET":  "cebulk-data-123456789012",
	}
	tests := []struct {
		name    string
		env     map[string]string
		want    config
		wantErr []string // substrings, all of them
	}{
		{
			name: "defaults",
			env:  base,
			want: config{Common: lambdaenv.Common{Backend: "ce", MixpanelRegion: "US", MixpanelConcurrency: 10, CEBaseURL: "https://api.cloud-elements.com/elements/api-v2", SecretID: base["CE_SECRET_ID"], Bucket: base["DATA_BUCKET"], LogLevel: slog.LevelInfo}, ChunkRecords: 50000},
		},
		{
			name: "everything set",
			env: with(base, map[string]string{
				"CE_BASE_URL": "http://127.0.0.1:8090/elements/api-v2", "CALLBACK_URL": "https://api.example.com/callbacks/ce",
				"IMPORT_CHUNK_RECORDS": "2000", "LOG_LEVEL": "debug",
			}),
			want: config{Common: lambdaenv.Common{Backend: "ce", MixpanelRegion: "US", MixpanelConcurrency: 10, CEBaseURL: "http://127.0.0.1:8090/elements/api-v2", SecretID: base["CE_SECRET_ID"], Bucket: base["DATA_BUCKET"], LogLevel: slog.LevelDebug}, CallbackURL: "https://api.example.com/callbacks/ce", ChunkRecords: 2000},
		},
		{
			name: "mixpanel backend: no callbacks",
			env: with(base, map[string]string{
				"BACKEND": "mixpanel", "MIXPANEL_REGION": "EU", "MIXPANEL_BASE_URL": "http://127.0.0.1:8091",
				"CALLBACK_URL": "https://api.example.com/callbacks/ce",
			}),
			want: config{Common: lambdaenv.Common{Backend: "mixpanel", MixpanelRegion: "EU", MixpanelConcurrency: 10, MixpanelBaseURL: "http://127.0.0.1:8091", CEBaseURL: "https://api.cloud-elements.com/elements/api-v2", SecretID: base["CE_SECRET_ID"], Bucket: base["DATA_BUCKET"], LogLevel: slog.LevelInfo}, ChunkRecords: 50000},
		},
		{
			name:    "every problem at once",
			env:     map[string]string{"CE_BASE_URL": "api.example.com", "CALLBACK_URL": "/callbacks", "IMPORT_CHUNK_RECORDS": "0", "LOG_LEVEL": "loud"},
			wantErr: []string{"CE_BASE_URL", "CE_SECRET_ID is required", "DATA_BUCKET is required", "CALLBACK_URL", "IMPORT_CHUNK_RECORDS", "LOG_LEVEL"},
		},
		{
			name:    "chunk size over the limit",
			env:     with(base, map[string]string{"IMPORT_CHUNK_RECORDS": "1000001"}),
			wantErr: []string{"IMPORT_CHUNK_RECORDS"},
		},
		{
			name:    "chunk size not a number",
			env:     with(base, map[string]string{"IMPORT_CHUNK_RECORDS": "50k"}),
			wantErr: []string{"IMPORT_CHUNK_RECORDS"},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := loadConfig(func(k string) string { return tc.env[k] })
			if len(tc.wantErr) > 0 {
				if err == nil {
					t.Fatalf("loadConfig = %+v, want an error", got)
				}
				for _, s := range tc.wantErr {
					if !strings.Contains(err.Error(), s) {
						t.Errorf("loadConfig error %q does not mention %q", err, s)
					}
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("loadConfig (-want +got):\n%s", diff)
			}
		})
	}
}

func with(base, extra map[string]string) map[string]string {
	m := map[string]string{}
	for k, v := range base {
		m[k] = v
	}
	for k, v := range extra {
		m[k] = v
	}
	return m
}

func TestNewHandlerReportsConfigurationProblems(t *testing.T) {
	_, err := newHandler(t.Context(), func(string) string { return "" })
	if err == nil || !strings.Contains(err.Error(), "CE_SECRET_ID is required") || !strings.Contains(err.Error(), "DATA_BUCKET is required") {
		t.Errorf("newHandler with an empty environment = %v, want every missing variable named", err)
	}
}
