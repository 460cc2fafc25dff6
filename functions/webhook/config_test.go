package main

import (
	"log/slog"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/cebulk/cebulk/internal/lambdaenv"
)

func TestLoadConfig(t *testing.T) {
	full := map[string]string{
		"CE_BASE_URL": "http://127.0.0.1:8090/elements/api-v2", "CE_SECRET_ID": "arn:aws:secretsmanager:us-east-1:123456789012:secret:cebulk-ce-AbCdEf", "DATA_BUCKET": "data",
		"EXPORT_FUNCTION_NAME": "cebulk-export", "IMPORT_FUNCTION_NAME": "cebulk-import", "LOG_LEVEL": "debug", "EXPORT_MAX_DAYS": "7",
	}
	for _, tc := range []struct {
		name    string
		env     map[string]string
		want    config
		wantErr []string
	}{
		{name: "full", env: full, want: config{Common: lambdaenv.Common{Backend: "ce", MixpanelRegion: "US", MixpanelConcurrency: 10, CEBaseURL: "http://127.0.0.1:8090/elements/api-v2", SecretID: "arn:aws:secretsmanager:us-east-1:123456789012:secret:cebulk-ce-AbCdEf", Bucket: "data", LogLevel: slog.LevelDebug}, ExportFunction: "cebulk-export", ImportFunction: "cebulk-import", MaxExportDays: 7}},
		{name: "defaults", env: map[string]string{"CE_SECRET_ID": "s", "DATA_BUCKET": "d", "EXPORT_FUNCTION_NAME": "e", "IMPORT_FUNCTION_NAME": "i"},
			want: config{Common: lambdaenv.Common{Backend: "ce", MixpanelRegion: "US", MixpanelConcurrency: 10, CEBaseURL: "https://api.cloud-elements.com/elements/api-v2", SecretID: "s", Bucket: "d"}, ExportFunction: "e", ImportFunction: "i", MaxExportDays: 1096}},
		{name: "everything wrong at once", env: map[string]string{"LOG_LEVEL": "loud", "EXPORT_MAX_DAYS": "many"},
			wantErr: []string{"CE_SECRET_ID is required", "DATA_BUCKET is required", "EXPORT_FUNCTION_NAME is required", "IMPORT_FUNCTION_NAME is required", "LOG_LEVEL", "EXPORT_MAX_DAYS"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := loadConfig(func(k string) string { return tc.env[k] })
			if len(tc.wantErr) > 0 {
				if err == nil {
					t.Fatalf("loadConfig = %+v, want an error", got)
				}
				for _, w := range tc.wantErr {
					if !strings.Contains(err.Error(), w) {
						t.Errorf("error %q does not mention %q", err, w)
					}
				}
				return
			}
			if err != nil {
				t.Fatalf("loadConfig: %v", err)
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("loadConfig (-want +got):\n%s", diff)
			}
		})
	}
}
