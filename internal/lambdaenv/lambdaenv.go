// Package lambdaenv is what the three functions share at a cold start: the
// common part of their environment (BACKEND and the Mixpanel settings,
// CE_BASE_URL, CE_SECRET_ID, DATA_BUCKET, LOG_LEVEL), a way to report every configuration problem at once, and the
// clients every function builds from it (logger, S3 store, job ledger, CE
// client over the Secrets Manager secret; internal/backend builds the
// Mixpanel backend on the same secret).
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
	"strconv"
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
// Backends (BACKEND).
const (
	BackendCE       = "ce"       // CE bulk jobs (default)
	BackendMixpanel = "mixpanel" // Mixpanel's own APIs with a service account
)

// DefaultMixpanelConcurrency is MIXPANEL_CONCURRENCY's default.
const DefaultMixpanelConcurrency = 10

const DefaultCEBaseURL = "https://api.cloud-elements.com/elements/api-v2"

// Common is the environment every function reads.
type Common struct {
	// Backend is BACKEND: BackendCE (default) or BackendMixpanel.
	Backend string
	// MixpanelRegion is MIXPANEL_REGION (US, EU or IN; US), and
	// MixpanelBaseURL MIXPANEL_BASE_URL: when set, every Mixpanel API under
	// that one base (emulators, proxies). Used by the Mixpanel backend.
	MixpanelRegion  string
	MixpanelBaseURL string
	// MixpanelConcurrency is MIXPANEL_CONCURRENCY: the /import and /engage
	// batches an import keeps in flight, 1–50 (DefaultMixpanelConcurrency;
	// Mixpanel advises 10 to 20).
	MixpanelConcurrency int
	CEBaseURL           string     // CE_BASE_URL (DefaultCEBaseURL)
	SecretID            string     // CE_SECRET_ID, required
	Bucket              string     // DATA_BUCKET, required
	LogLevel            slog.Level // LOG_LEVEL (info)
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
		Backend:         getenv("BACKEND"),
		MixpanelBaseURL: getenv("MIXPANEL_BASE_URL"),
		CEBaseURL:       getenv("CE_BASE_URL"),
		SecretID:        getenv("CE_SECRET_ID"),
		Bucket:          getenv("DATA_BUCKET"),
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
	switch c.Backend {
	case "":
		c.Backend = BackendCE
	case BackendCE, BackendMixpanel:
	default:
		p.Addf("BACKEND=%q: want %s or %s", c.Backend, BackendCE, BackendMixpanel)
	}
	switch r := strings.ToUpper(getenv("MIXPANEL_REGION")); r {
	case "":
		c.MixpanelRegion = "US"
	case "US", "EU", "IN":
		c.MixpanelRegion = r
	default:
		p.Addf("MIXPANEL_REGION=%q: want US, EU or IN", getenv("MIXPANEL_REGION"))
	}
	c.MixpanelConcurrency = DefaultMixpanelConcurrency
	if v := getenv("MIXPANEL_CONCURRENCY"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 50 {
			p.Addf("MIXPANEL_CONCURRENCY=%q: want a whole number from 1 to 50", v)
		}
		c.MixpanelConcurrency = n
	}
	if c.MixpanelBaseURL != "" && !AbsoluteHTTP(c.MixpanelBaseURL) {
		p.Addf("MIXPANEL_BASE_URL=%q: want an absolute http or https URL", c.MixpanelBaseURL)
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
	// Secret is the secret, read on first use and cached; internal/backend
	// builds the Mixpanel backend's client on it.
	Secret *secrets.Loader
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
	need := secrets.NeedCE
	if c.Backend == BackendMixpanel {
		need = secrets.NeedMixpanel
	}
	loader := secrets.NewLoaderFor(awsenv.NewSecretReader(cfg), c.SecretID, need)
	return &Clients{
		Log:    log,
		AWS:    cfg,
		Store:  store,
		Jobs:   ledger.New(store, c.Bucket),
		CE:     ceclient.New(loader, c.CEBaseURL, ce.WithLogger(log)),
		Secret: loader,
	}
}
