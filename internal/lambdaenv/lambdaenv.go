// Package lambdaenv is what the three functions share at a cold start: the
// common part of their environment (CE_BASE_URL, CE_SECRET_ID, DATA_BUCKET,
// LOG_LEVEL), a way to report every configuration problem at once, and the
// clients every function builds from it (logger, S3 store, job ledger, CE
// client over the Secrets Manager secret).
//
// Each function's config.go reads its own variables and embeds Common;
// internal/samtemplate checks the names read here and there against
// template.yaml.
package lambdaenv

import (
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"slices"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"

	"github.com/cebulk/cebulk/internal/awsenv"
	"github.com/cebulk/cebulk/internal/ceclient"
	"github.com/cebulk/cebulk/internal/ledger"
	"github.com/cebulk/cebulk/internal/logging"
	"github.com/cebulk/cebulk/internal/s3stream"
	"github.com/cebulk/cebulk/internal/secrets"
	"github.com/cebulk/cebulk/pkg/ce"
)

// DefaultCEBaseURL is CE's production API base.
const DefaultCEBaseURL = "https://api.cloud-elements.com/elements/api-v2"

// Common is the environment every function reads.
type Common struct {
	CEBaseURL string     // CE_BASE_URL (DefaultCEBaseURL)
	SecretID  string     // CE_SECRET_ID, required
	Bucket    string     // DATA_BUCKET, required
	LogLevel  slog.Level // LOG_LEVEL (info)
}

// Problems collects configuration problems, so a function reports all of
// them in one error.
type Problems []string

// Addf records a problem.
func (p *Problems) Addf(format string, args ...any) { *p = append(*p, fmt.Sprintf(format, args...)) }

// Err returns the problems as one error, sorted, or nil when there are none.
func (p Problems) Err() error {
	if len(p) == 0 {
		return nil
	}
	s := slices.Clone(p)
	slices.Sort(s)
	return errors.New("configuration: " + strings.Join(s, "; "))
}

// fullSecretARN reports whether s is a complete Secrets Manager secret ARN
// (arn:aws[a-z-]*:secretsmanager:REGION:ACCOUNT:secret:NAME-XXXXXX): the
// name is followed by the hyphen and 6 characters Secrets Manager adds. A
// plain check, not a regular expression compiled at initialisation: that
// cost 184 allocations of every cold start.
func fullSecretARN(s string) bool {
	f := strings.Split(s, ":")
	if len(f) != 7 || f[0] != "arn" || f[2] != "secretsmanager" || f[5] != "secret" {
		return false
	}
	partition, ok := strings.CutPrefix(f[1], "aws")
	if !ok || !onlyBytes(partition, func(c byte) bool { return c >= 'a' && c <= 'z' || c == '-' }) {
		return false
	}
	if f[3] == "" || !onlyBytes(f[3], func(c byte) bool { return c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' }) {
		return false
	}
	if len(f[4]) != 12 || !onlyBytes(f[4], func(c byte) bool { return c >= '0' && c <= '9' }) {
		return false
	}
	name := f[6]
	alnum := func(c byte) bool { return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' }
	return len(name) >= 8 && name[len(name)-7] == '-' && onlyBytes(name[len(name)-6:], alnum) &&
		onlyBytes(name, func(c byte) bool { return alnum(c) || strings.IndexByte("/_+=.@-", c) >= 0 })
}

// onlyBytes reports whether every byte of s satisfies ok.
func onlyBytes(s string, ok func(byte) bool) bool {
	for i := 0; i < len(s); i++ {
		if !ok(s[i]) {
			return false
		}
	}
	return true
}

// ReadCommon reads the common variables, recording problems in p.
func ReadCommon(getenv func(string) string, p *Problems) Common {
	c := Common{
		CEBaseURL: getenv("CE_BASE_URL"),
		SecretID:  getenv("CE_SECRET_ID"),
		Bucket:    getenv("DATA_BUCKET"),
	}
	if c.CEBaseURL == "" {
		c.CEBaseURL = DefaultCEBaseURL
	} else if !AbsoluteHTTP(c.CEBaseURL) {
		p.Addf("CE_BASE_URL=%q: want an absolute http or https URL", c.CEBaseURL)
	}
	switch {
	case c.SecretID == "":
		p.Addf("CE_SECRET_ID is required")
	case strings.HasPrefix(c.SecretID, "arn:") && !fullSecretARN(c.SecretID):
		p.Addf("CE_SECRET_ID=%q is not a full secret ARN: give the ARN with the 6-character suffix Secrets Manager adds (…:secret:NAME-AbCdEf), or the secret's name; a partial ARN matches no IAM policy", c.SecretID)
	}
	if c.Bucket == "" {
		p.Addf("DATA_BUCKET is required")
	}
	level, err := logging.ParseLevel(getenv("LOG_LEVEL"))
	if err != nil {
		p.Addf("%v", err)
	}
	c.LogLevel = level
	return c
}

// AbsoluteHTTP reports whether s is an absolute http or https URL.
func AbsoluteHTTP(s string) bool {
	u, err := url.Parse(s)
	return err == nil && (u.Scheme == "http" || u.Scheme == "https") && u.Host != ""
}

// Clients are built once per cold start from Common.
type Clients struct {
	Log   *slog.Logger // Lambda's JSON logger at LOG_LEVEL, also slog's default
	AWS   aws.Config
	Store *s3stream.Store
	Jobs  *ledger.Store
	CE    *ceclient.Client // credentials from the secret, refreshed on 401
}

// NewClients builds a function's clients with Lambda's JSON logger at
// c.LogLevel, which also becomes slog's default, and the AWS configuration
// Lambda's environment gives (awsenv.FromEnv: not the SDK's config package,
// whose initialisation alone costs a third of a cold start); nothing is
// called over the network yet (the secret is read on the first CE call).
func NewClients(c Common, getenv func(string) string) (*Clients, error) {
	log := logging.New(c.LogLevel)
	slog.SetDefault(log)
	cfg, err := awsenv.FromEnv(getenv)
	if err != nil {
		return nil, err
	}
	return Build(c, cfg, log), nil
}

// Build builds the clients on cfg with the given logger (the operator CLI
// loads the SDK's default chain and logs as text to stderr) and leaves
// slog's default alone.
func Build(c Common, cfg aws.Config, log *slog.Logger) *Clients {
	store := s3stream.New(awsenv.S3(cfg), s3stream.WithLogger(log))
	loader := secrets.NewLoader(awsenv.NewSecretReader(cfg), c.SecretID)
	return &Clients{
		Log:   log,
		AWS:   cfg,
		Store: store,
		Jobs:  ledger.New(store, c.Bucket),
		CE:    ceclient.New(loader, c.CEBaseURL, ce.WithLogger(log)),
	}
}
