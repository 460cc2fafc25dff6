package lambdaenv

import (
	"log/slog"
	"regexp"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestReadCommon(t *testing.T) {
	for _, tc := range []struct {
		name     string
		env      map[string]string
		want     Common
		problems []string
	}{
		{name: "defaults", env: map[string]string{"CE_SECRET_ID": "s", "DATA_BUCKET": "b"},
			want: Common{Backend: BackendCE, MixpanelRegion: "US", MixpanelConcurrency: DefaultMixpanelConcurrency, CEBaseURL: DefaultCEBaseURL, SecretID: "s", Bucket: "b", LogLevel: slog.LevelInfo}},
		{name: "all set", env: map[string]string{"CE_BASE_URL": "http://127.0.0.1:1/elements/api-v2", "CE_SECRET_ID": "s", "DATA_BUCKET": "b", "LOG_LEVEL": "WARN"},
			want: Common{Backend: BackendCE, MixpanelRegion: "US", MixpanelConcurrency: DefaultMixpanelConcurrency, CEBaseURL: "http://127.0.0.1:1/elements/api-v2", SecretID: "s", Bucket: "b", LogLevel: slog.LevelWarn}},
		{name: "secret by full ARN", env: map[string]string{"CE_SECRET_ID": "arn:aws:secretsmanager:us-east-1:123456789012:secret:cebulk-ce-AbCdEf", "DATA_BUCKET": "b"},
			want: Common{Backend: BackendCE, MixpanelRegion: "US", MixpanelConcurrency: DefaultMixpanelConcurrency, CEBaseURL: DefaultCEBaseURL, SecretID: "arn:aws:secretsmanager:us-east-1:123456789012:secret:cebulk-ce-AbCdEf", Bucket: "b", LogLevel: slog.LevelInfo}},
		{name: "secret by name", env: map[string]string{"CE_SECRET_ID": "team/cebulk-ce", "DATA_BUCKET": "b"},
			want: Common{Backend: BackendCE, MixpanelRegion: "US", MixpanelConcurrency: DefaultMixpanelConcurrency, CEBaseURL: DefaultCEBaseURL, SecretID: "team/cebulk-ce", Bucket: "b", LogLevel: slog.LevelInfo}},
		{name: "mixpanel backend", env: map[string]string{"BACKEND": "mixpanel", "MIXPANEL_REGION": "eu", "MIXPANEL_CONCURRENCY": "20", "MIXPANEL_BASE_URL": "http://127.0.0.1:9/mp", "CE_SECRET_ID": "s", "DATA_BUCKET": "b"},
			want: Common{Backend: BackendMixpanel, MixpanelRegion: "EU", MixpanelConcurrency: 20, MixpanelBaseURL: "http://127.0.0.1:9/mp", CEBaseURL: DefaultCEBaseURL, SecretID: "s", Bucket: "b", LogLevel: slog.LevelInfo}},
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

// TestFullSecretARN checks the plain check against the regular expression
// it replaced.
func TestFullSecretARN(t *testing.T) {
	oracle := regexp.MustCompile(`^arn:aws[a-z-]*:secretsmanager:[a-z0-9-]+:[0-9]{12}:secret:[A-Za-z0-9/_+=.@-]+-[A-Za-z0-9]{6}$`)
	base := "arn:aws:secretsmanager:us-east-1:123456789012:secret:cebulk/ce-AbCdEf"
	cases := []string{
		base, "arn:aws-us-gov:secretsmanager:us-gov-west-1:123456789012:secret:x-AbCdE1",
		"arn:aws-cn:secretsmanager:cn-north-1:123456789012:secret:a_b+c=d.e@f-g-123456",
		"arn:aws:secretsmanager:us-east-1:123456789012:secret:-AbCdEf", "arn:aws:secretsmanager:us-east-1:123456789012:secret:--AbCdE",
		"arn:aws:secretsmanager:us-east-1:123456789012:secret:cebulk", "arn:aws:secretsmanager:us-east-1:123456789012:secret:cebulk-AbCdE",
		"arn:aws:secretsmanager:us-east-1:123456789012:secret:cebulk-AbCdEf:extra", "arn:aws:secretsmanager:us-east-1:12345678901:secret:c-AbCdEf",
		"arn:aws:secretsmanager::123456789012:secret:c-AbCdEf", "arn:aws:secretsmanager:US-east-1:123456789012:secret:c-AbCdEf",
		"arn:awsX:secretsmanager:us-east-1:123456789012:secret:c-AbCdEf", "arn:aw:secretsmanager:us-east-1:123456789012:secret:c-AbCdEf",
		"arn:aws:secretsmanager:us-east-1:123456789012:secret:c d-AbCdEf", "arn:aws:secretsmanager:us-east-1:123456789012:secret:cé-AbCdEf",
		"arn:aws:secretsmanager:us-east-1:123456789012:secret:c-AbCd_f", "arn:aws:ssm:us-east-1:123456789012:secret:c-AbCdEf",
		"arn:aws:secretsmanager:us-east-1:123456789012:parameter:c-AbCdEf", "cebulk-ce", "",
	}
	for i := range base { // every truncation and every one-byte change
		cases = append(cases, base[:i], base[:i]+"#"+base[i+1:], base[:i]+"-"+base[i+1:], base[:i]+":"+base[i+1:])
	}
	for _, s := range cases {
		if got, want := fullSecretARN(s), oracle.MatchString(s); got != want {
			t.Errorf("fullSecretARN(%q) = %v, want %v", s, got, want)
		}
	}
}
