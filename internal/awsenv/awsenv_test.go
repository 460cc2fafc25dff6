package awsenv

import (
	"context"
	"encoding/pem"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/google/go-cmp/cmp"
)

// env returns a getenv over m.
func env(m map[string]string) func(string) string { return func(k string) string { return m[k] } }

// lambdaEnv is what Lambda sets for a function, plus extra.
func lambdaEnv(extra map[string]string) map[string]string {
	m := map[string]string{
		"AWS_REGION": "eu-west-1", "AWS_DEFAULT_REGION": "eu-west-1",
		"AWS_ACCESS_KEY_ID": "ASIAEXAMPLE", "AWS_SECRET_ACCESS_KEY": "secret-key", "AWS_SESSION_TOKEN": "session-token",
	}
	for k, v := range extra {
		m[k] = v
	}
	return m
}

func TestFromEnvLambda(t *testing.T) {
	cfg, err := FromEnv(env(lambdaEnv(nil)))
	if err != nil {
		t.Fatalf("FromEnv: %v", err)
	}
	creds, err := cfg.Credentials.Retrieve(t.Context())
	if err != nil {
		t.Fatalf("Retrieve: %v", err)
	}
	want := aws.Credentials{AccessKeyID: "ASIAEXAMPLE", SecretAccessKey: "secret-key", SessionToken: "session-token", Source: "EnvConfigCredentials"}
	if diff := cmp.Diff(want, creds); diff != "" {
		t.Errorf("credentials (-want +got):\n%s", diff)
	}
	if cfg.Region != "eu-west-1" || Local(cfg) || cfg.HTTPClient != nil || cfg.RetryMaxAttempts != 0 || cfg.RetryMode != "" {
		t.Errorf("cfg = region %q, local %v, HTTP client %T, retries %d %q; want eu-west-1, AWS, the SDK's defaults", cfg.Region, Local(cfg), cfg.HTTPClient, cfg.RetryMaxAttempts, cfg.RetryMode)
	}
	if cfg.RequestChecksumCalculation != aws.RequestChecksumCalculationWhenRequired || cfg.ResponseChecksumValidation != aws.ResponseChecksumValidationWhenRequired {
		t.Errorf("checksums %v/%v, want when required", cfg.RequestChecksumCalculation, cfg.ResponseChecksumValidation)
	}
	ep, err := serviceEndpoint(t.Context(), cfg, lambdaService)
	if err != nil || ep != "https://lambda.eu-west-1.amazonaws.com" {
		t.Errorf("Lambda endpoint = %q, %v", ep, err)
	}
}

func TestFromEnvSettings(t *testing.T) {
	for _, tc := range []struct {
		name               string
		env                map[string]string
		region             string
		base, s3, sm, lamb string
		fips, dual         bool
		attempts           int
		mode               aws.RetryMode
	}{
		{name: "default region", env: map[string]string{"AWS_REGION": "", "AWS_DEFAULT_REGION": "us-east-2"}, region: "us-east-2",
			s3: "", sm: "https://secretsmanager.us-east-2.amazonaws.com", lamb: "https://lambda.us-east-2.amazonaws.com"},
		{name: "one local endpoint", env: map[string]string{"AWS_ENDPOINT_URL": "http://127.0.0.1:5000"}, region: "eu-west-1",
			base: "http://127.0.0.1:5000", s3: "http://127.0.0.1:5000", sm: "http://127.0.0.1:5000", lamb: "http://127.0.0.1:5000"},
		{name: "per service", env: map[string]string{"AWS_ENDPOINT_URL": "http://127.0.0.1:5000", "AWS_ENDPOINT_URL_LAMBDA": "http://127.0.0.1:9001",
			"AWS_ENDPOINT_URL_SECRETS_MANAGER": "http://127.0.0.1:9002", "AWS_ENDPOINT_URL_S3": "http://127.0.0.1:9003"}, region: "eu-west-1",
			base: "http://127.0.0.1:5000", s3: "http://127.0.0.1:9003", sm: "http://127.0.0.1:9002", lamb: "http://127.0.0.1:9001"},
		{name: "ignored endpoints", env: map[string]string{"AWS_ENDPOINT_URL": "http://127.0.0.1:5000", "AWS_ENDPOINT_URL_LAMBDA": "http://127.0.0.1:9001",
			"AWS_IGNORE_CONFIGURED_ENDPOINT_URLS": "TRUE"}, region: "eu-west-1",
			sm: "https://secretsmanager.eu-west-1.amazonaws.com", lamb: "https://lambda.eu-west-1.amazonaws.com"},
		{name: "fips dual-stack", env: map[string]string{"AWS_USE_FIPS_ENDPOINT": "true", "AWS_USE_DUALSTACK_ENDPOINT": "True"}, region: "eu-west-1",
			fips: true, dual: true, sm: "https://secretsmanager-fips.eu-west-1.amazonaws.com", lamb: "https://lambda-fips.eu-west-1.api.aws"},
		{name: "retries", env: map[string]string{"AWS_MAX_ATTEMPTS": "5", "AWS_RETRY_MODE": "adaptive"}, region: "eu-west-1",
			attempts: 5, mode: aws.RetryModeAdaptive, sm: "https://secretsmanager.eu-west-1.amazonaws.com", lamb: "https://lambda.eu-west-1.amazonaws.com"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := lambdaEnv(tc.env)
			// The service clients look at AWS_ENDPOINT_URL* in the process's
			// environment too.
			for _, k := range []string{"AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL_SECRETS_MANAGER", "AWS_ENDPOINT_URL_LAMBDA"} {
				t.Setenv(k, m[k])
			}
			cfg, err := FromEnv(env(m))
			if err != nil {
				t.Fatalf("FromEnv: %v", err)
			}
			if cfg.Region != tc.region || aws.ToString(cfg.BaseEndpoint) != tc.base || cfg.RetryMaxAttempts != tc.attempts || cfg.RetryMode != tc.mode {
				t.Errorf("region %q, base %q, retries %d %q; want %q, %q, %d %q", cfg.Region, aws.ToString(cfg.BaseEndpoint), cfg.RetryMaxAttempts, cfg.RetryMode, tc.region, tc.base, tc.attempts, tc.mode)
			}
			s3o := S3(cfg).Options()
			if aws.ToString(s3o.BaseEndpoint) != tc.s3 {
				t.Errorf("S3 endpoint %q, want %q", aws.ToString(s3o.BaseEndpoint), tc.s3)
			}
			if s3o.EndpointOptions.UseFIPSEndpoint == aws.FIPSEndpointStateEnabled != tc.fips || s3o.EndpointOptions.UseDualStackEndpoint == aws.DualStackEndpointStateEnabled != tc.dual {
				t.Errorf("S3 FIPS %v, dual-stack %v; want %v, %v", s3o.EndpointOptions.UseFIPSEndpoint, s3o.EndpointOptions.UseDualStackEndpoint, tc.fips, tc.dual)
			}
			if got, err := serviceEndpoint(t.Context(), cfg, secretsManagerService); err != nil || got != tc.sm {
				t.Errorf("Secrets Manager endpoint = %q, %v; want %q", got, err, tc.sm)
			}
			if got, err := serviceEndpoint(t.Context(), cfg, lambdaService); err != nil || got != tc.lamb {
				t.Errorf("Lambda endpoint = %q, %v; want %q", got, err, tc.lamb)
			}
			if tc.attempts > 0 && NewAsyncInvoker(cfg).c.retryer.MaxAttempts() != tc.attempts {
				t.Errorf("invoker's max attempts = %d, want %d", NewAsyncInvoker(cfg).c.retryer.MaxAttempts(), tc.attempts)
			}
		})
	}
}

func TestFromEnvErrors(t *testing.T) {
	for _, tc := range []struct {
		name string
		env  map[string]string
		want string
	}{
		{"no credentials", map[string]string{"AWS_ACCESS_KEY_ID": "", "AWS_SECRET_ACCESS_KEY": ""}, "no credentials"},
		{"bad fips", map[string]string{"AWS_USE_FIPS_ENDPOINT": "yes"}, "AWS_USE_FIPS_ENDPOINT"},
		{"bad attempts", map[string]string{"AWS_MAX_ATTEMPTS": "0"}, "AWS_MAX_ATTEMPTS"},
		{"bad retry mode", map[string]string{"AWS_RETRY_MODE": "eager"}, "AWS_RETRY_MODE"},
		{"missing CA bundle", map[string]string{"AWS_CA_BUNDLE": "/nonexistent/ca.pem"}, "AWS_CA_BUNDLE"},
		{"container endpoint elsewhere", map[string]string{"AWS_ACCESS_KEY_ID": "", "AWS_CONTAINER_CREDENTIALS_FULL_URI": "http://10.1.2.3/creds"}, "AWS_CONTAINER_CREDENTIALS_FULL_URI"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := FromEnv(env(lambdaEnv(tc.env)))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("FromEnv error = %v, want one naming %s", err, tc.want)
			}
			if strings.Contains(err.Error(), "secret-key") || strings.Contains(err.Error(), "session-token") {
				t.Errorf("error shows credentials: %v", err)
			}
		})
	}
}

// TestFromEnvCABundle: with AWS_CA_BUNDLE the clients trust that CA (the
// local stack's proxy), and only it.
func TestFromEnvCABundle(t *testing.T) {
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusAccepted) }))
	defer srv.Close()
	bundle := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(bundle, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw}), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := FromEnv(env(lambdaEnv(map[string]string{"AWS_CA_BUNDLE": bundle, "AWS_ENDPOINT_URL_LAMBDA": srv.URL})))
	if err != nil {
		t.Fatalf("FromEnv: %v", err)
	}
	if err := NewAsyncInvoker(cfg).InvokeAsync(t.Context(), "f", nil); err != nil {
		t.Errorf("InvokeAsync over TLS with the bundle: %v", err)
	}
	cfg, err = FromEnv(env(lambdaEnv(map[string]string{"AWS_ENDPOINT_URL_LAMBDA": srv.URL, "AWS_MAX_ATTEMPTS": "1"})))
	if err != nil {
		t.Fatalf("FromEnv: %v", err)
	}
	if err := NewAsyncInvoker(cfg).InvokeAsync(t.Context(), "f", nil); err == nil || !strings.Contains(err.Error(), "certificate") {
		t.Errorf("InvokeAsync over TLS without the bundle: %v, want a certificate error", err)
	}
}

// TestFromEnvContainerCredentials: without keys, credentials come from the
// container endpoint with its authorization token, as the SDK's chain does.
func TestFromEnvContainerCredentials(t *testing.T) {
	var auth []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		auth = append(auth, r.Header.Get("Authorization"))
		_, _ = w.Write([]byte(`{"AccessKeyId":"ASIACONTAINER","SecretAccessKey":"container-secret","Token":"container-token","Expiration":"2099-01-01T00:00:00Z"}`))
	}))
	defer srv.Close()
	tokenFile := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(tokenFile, []byte("file-token"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		env  map[string]string
		auth string
	}{
		{"full URI, token", map[string]string{"AWS_CONTAINER_CREDENTIALS_FULL_URI": srv.URL + "/creds", "AWS_CONTAINER_AUTHORIZATION_TOKEN": "env-token"}, "env-token"},
		{"full URI, token file", map[string]string{"AWS_CONTAINER_CREDENTIALS_FULL_URI": srv.URL + "/creds", "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE": tokenFile}, "file-token"},
		{"relative URI", map[string]string{"AWS_CONTAINER_CREDENTIALS_RELATIVE_URI": "/v2/credentials/x"}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			old := ecsCredentialsHost
			ecsCredentialsHost = srv.URL
			defer func() { ecsCredentialsHost = old }()
			auth = nil
			m := lambdaEnv(tc.env)
			m["AWS_ACCESS_KEY_ID"], m["AWS_SECRET_ACCESS_KEY"], m["AWS_SESSION_TOKEN"] = "", "", ""
			cfg, err := FromEnv(env(m))
			if err != nil {
				t.Fatalf("FromEnv: %v", err)
			}
			c, err := cfg.Credentials.Retrieve(context.Background())
			if err != nil {
				t.Fatalf("Retrieve: %v", err)
			}
			if c.AccessKeyID != "ASIACONTAINER" || c.SessionToken != "container-token" || !c.CanExpire {
				t.Errorf("credentials = %s/%s (expire %v), want the container's", c.AccessKeyID, c.SessionToken, c.CanExpire)
			}
			if diff := cmp.Diff([]string{tc.auth}, auth); diff != "" {
				t.Errorf("Authorization sent to the endpoint (-want +got):\n%s", diff)
			}
		})
	}
}

func TestLocal(t *testing.T) {
	if Local(aws.Config{}) {
		t.Errorf("Local(no endpoint) = true")
	}
	if !Local(aws.Config{BaseEndpoint: aws.String("http://127.0.0.1:5000")}) {
		t.Errorf("Local(endpoint) = false")
	}
	if !S3(aws.Config{Region: "us-east-1", BaseEndpoint: aws.String("http://127.0.0.1:5000")}).Options().UsePathStyle {
		t.Errorf("S3 client for a local endpoint is not path-style")
	}
	if S3(aws.Config{Region: "us-east-1"}).Options().UsePathStyle {
		t.Errorf("S3 client for AWS is path-style")
	}
}
