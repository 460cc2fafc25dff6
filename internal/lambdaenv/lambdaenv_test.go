package lambdaenv

import (
	"log/slog"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/cebulk/cebulk/pkg/mixpanel"
)

func TestReadCommon(t *testing.T) {
	for _, tc := range []struct {
		name     string
		env      map[string]string
		want     Common
		problems []string
	}{
		{name: "defaults", env: map[string]string{"CE_SECRET_ID": "s", "DATA_BUCKET": "b"},
			want: Common{Backend: BackendCE, MixpanelRegion: mixpanel.RegionUS, MixpanelConcurrency: DefaultMixpanelConcurrency, CEBaseURL: DefaultCEBaseURL, SecretID: "s", Bucket: "b", LogLevel: slog.LevelInfo}},
		{name: "all set", env: map[string]string{"CE_BASE_URL": "http://127.0.0.1:1/elements/api-v2", "CE_SECRET_ID": "s", "DATA_BUCKET": "b", "LOG_LEVEL": "WARN"},
			want: Common{Backend: BackendCE, MixpanelRegion: mixpanel.RegionUS, MixpanelConcurrency: DefaultMixpanelConcurrency, CEBaseURL: "http://127.0.0.1:1/elements/api-v2", SecretID: "s", Bucket: "b", LogLevel: slog.LevelWarn}},
		{name: "secret by full ARN", env: map[string]string{"CE_SECRET_ID": "arn:aws:secretsmanager:us-east-1:123456789012:secret:cebulk-ce-AbCdEf", "DATA_BUCKET": "b"},
			want: Common{Backend: BackendCE, MixpanelRegion: mixpanel.RegionUS, MixpanelConcurrency: DefaultMixpanelConcurrency, CEBaseURL: DefaultCEBaseURL, SecretID: "arn:aws:secretsmanager:us-east-1:123456789012:secret:cebulk-ce-AbCdEf", Bucket: "b", LogLevel: slog.LevelInfo}},
		{name: "secret by name", env: map[string]string{"CE_SECRET_ID": "team/cebulk-ce", "DATA_BUCKET": "b"},
			want: Common{Backend: BackendCE, MixpanelRegion: mixpanel.RegionUS, MixpanelConcurrency: DefaultMixpanelConcurrency, CEBaseURL: DefaultCEBaseURL, SecretID: "team/cebulk-ce", Bucket: "b", LogLevel: slog.LevelInfo}},
		{name: "mixpanel backend", env: map[string]string{"BACKEND": "mixpanel", "MIXPANEL_REGION": "eu", "MIXPANEL_CONCURRENCY": "20", "MIXPANEL_BASE_URL": "http://127.0.0.1:9/mp", "CE_SECRET_ID": "s", "DATA_BUCKET": "b"},
			want: Common{Backend: BackendMixpanel, MixpanelRegion: mixpanel.RegionEU, MixpanelConcurrency: 20, MixpanelBaseURL: "http://127.0.0.1:9/mp", CEBaseURL: DefaultCEBaseURL, SecretID: "s", Bucket: "b", LogLevel: slog.LevelInfo}},
		{name: "unknown backend and region", env: map[string]string{"BACKEND": "segment", "MIXPANEL_REGION": "APAC", "MIXPANEL_CONCURRENCY": "0", "MIXPANEL_BASE_URL": "mixpanel.internal", "CE_SECRET_ID": "s", "DATA_BUCKET": "b"},
			problems: []string{`BACKEND="segment"`, `MIXPANEL_REGION="APAC"`, "MIXPANEL_CONCURRENCY", "MIXPANEL_BASE_URL"}},
		{name: "partial secret ARN", env: map[string]string{"CE_SECRET_ID": "arn:aws:secretsmanager:us-east-1:123456789012:secret:cebulk", "DATA_BUCKET": "b"},
			problems: []string{"is not a full secret ARN"}},
		{name: "everything wrong", env: map[string]string{"CE_BASE_URL": "api.example.com", "LOG_LEVEL": "loud"},
			problems: []string{"CE_BASE_URL", "CE_SECRET_ID is required", "DATA_BUCKET is required", "LOG_LEVEL"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var p Problems
			got := ReadCommon(func(k string) string { return tc.env[k] }, &p)
			if len(tc.problems) == 0 {
				if err := p.Err(); err != nil {
					t.Fatalf("ReadCommon problems: %v", err)
				}
				if diff := cmp.Diff(tc.want, got); diff != "" {
					t.Errorf("ReadCommon (-want +got):\n%s", diff)
				}
				return
			}
			err := p.Err()
			if err == nil {
				t.Fatalf("ReadCommon = %+v, want problems", got)
			}
			for _, w := range tc.problems {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %q", err, w)
				}
			}
		})
	}
}

func TestProblemsSorted(t *testing.T) {
	p := Problems{"b", "a"}
	if got, want := p.Err().Error(), "configuration: a; b"; got != want {
		t.Errorf("Err() = %q, want %q", got, want)
	}
	if (Problems{}).Err() != nil {
		t.Errorf("no problems gave an error")
	}
}
