// Package awsenv builds the AWS SDK configuration and clients the same way
// for every function, the CLI and the tests, and is the one place that knows
// the two ways of doing it:
//
//   - [FromEnv], for the three Lambda functions: an aws.Config read from the
//     environment Lambda gives a function, without the SDK's config package.
//     Go runs every linked package's initialisation at a cold start, used or
//     not, and the config package links the SSO, SSO OIDC, Sign-In and STS
//     clients (13–14 ms of a 40 ms cold start; README, Performance).
//   - [defaultchain.Load] (internal/awsenv/defaultchain), for the CLI and
//     the tests: the SDK's default chain (profiles, SSO, web identity, IMDS).
//
// Likewise [AsyncInvoker] queues Lambda invocations and [SecretReader]
// reads secrets with signed requests of their own rather than the Lambda
// and Secrets Manager clients, whose schemas and endpoint tables cost 4–7
// and about 1 ms of every cold start.
//
// When AWS_ENDPOINT_URL is set (the local stack: moto, or the demo's
// embedded servers) S3 is switched to path-style addressing, the only form
// local servers answer.
package awsenv

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/credentials/endpointcreds"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/smithy-go/logging"
)

// ecsCredentialsHost is where AWS_CONTAINER_CREDENTIALS_RELATIVE_URI points
// (a variable so tests can point it at a local server).
var ecsCredentialsHost = "http://169.254.170.2"

// FromEnv returns the SDK configuration of a Lambda function, read through
// getenv (os.Getenv in production) as the SDK's default chain reads the
// same variables:
//
//   - region: AWS_REGION, else AWS_DEFAULT_REGION;
//   - credentials: AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY and
//     AWS_SESSION_TOKEN (Lambda gives a function its execution role's
//     credentials so), else the container credentials endpoint
//     (AWS_CONTAINER_CREDENTIALS_RELATIVE_URI or _FULL_URI, with
//     AWS_CONTAINER_AUTHORIZATION_TOKEN or _TOKEN_FILE), refreshed before
//     they expire;
//   - endpoints: AWS_ENDPOINT_URL and AWS_ENDPOINT_URL_<SERVICE> (S3,
//     SECRETS_MANAGER, LAMBDA), unless AWS_IGNORE_CONFIGURED_ENDPOINT_URLS
//     is true; AWS_USE_FIPS_ENDPOINT and AWS_USE_DUALSTACK_ENDPOINT;
//   - AWS_CA_BUNDLE: the only certificates trusted (as the SDK does);
//   - retries: the SDK's standard retryer, AWS_MAX_ATTEMPTS and
//     AWS_RETRY_MODE (standard or adaptive);
//   - AWS_SDK_UA_APP_ID.
//
// Not read: shared config and credentials files and AWS_PROFILE, SSO and
// sign-in sessions, web identity (AWS_WEB_IDENTITY_TOKEN_FILE, STS),
// credential processes, IMDS, AWS_DEFAULTS_MODE. Lambda sets none of them;
// without keys or a container endpoint FromEnv fails rather than fall back.
func FromEnv(getenv func(string) string) (aws.Config, error) {
	src, err := readEnvSource(getenv)
	if err != nil {
		return aws.Config{}, fmt.Errorf("load AWS configuration: %w", err)
	}
	cfg := aws.Config{
		Region:        getenv("AWS_REGION"),
		Logger:        logging.NewStandardLogger(os.Stderr),
		ConfigSources: []any{src},
		AppID:         getenv("AWS_SDK_UA_APP_ID"),
		// Checksums only where an API requires them: identical on AWS, and
		// the only setting every local S3 server accepts (no aws-chunked
		// bodies).
		RequestChecksumCalculation: aws.RequestChecksumCalculationWhenRequired,
		ResponseChecksumValidation: aws.ResponseChecksumValidationWhenRequired,
		RetryMaxAttempts:           src.maxAttempts,
		RetryMode:                  src.retryMode,
	}
	if cfg.Region == "" {
		cfg.Region = getenv("AWS_DEFAULT_REGION")
	}
	if ep := getenv("AWS_ENDPOINT_URL"); ep != "" && !src.ignoreEndpoints {
		cfg.BaseEndpoint = aws.String(ep)
	}
	if bundle := getenv("AWS_CA_BUNDLE"); bundle != "" {
		pem, err := os.ReadFile(bundle)
		if err != nil {
			return aws.Config{}, fmt.Errorf("load AWS configuration: AWS_CA_BUNDLE: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return aws.Config{}, fmt.Errorf("load AWS configuration: AWS_CA_BUNDLE=%s holds no PEM certificate", bundle)
		}
		cfg.HTTPClient = awshttp.NewBuildableClient().WithTransportOptions(func(tr *http.Transport) {
			if tr.TLSClientConfig == nil {
				tr.TLSClientConfig = &tls.Config{MinVersion: tls.VersionTLS12}
			}
			tr.TLSClientConfig.RootCAs = pool
		})
	}
	cfg.Credentials, err = envCredentials(getenv)
	if err != nil {
		return aws.Config{}, fmt.Errorf("load AWS configuration: %w", err)
	}
	return cfg, nil
}

// envCredentials is the part of the default credential chain that applies
// in Lambda: keys in the environment, else the container endpoint.
func envCredentials(getenv func(string) string) (aws.CredentialsProvider, error) {
	id, secret := getenv("AWS_ACCESS_KEY_ID"), getenv("AWS_SECRET_ACCESS_KEY")
	if id == "" {
		id = getenv("AWS_ACCESS_KEY") // the SDK's older names
	}
	if secret == "" {
		secret = getenv("AWS_SECRET_KEY")
	}
	if id != "" && secret != "" {
		return credentials.StaticCredentialsProvider{Value: aws.Credentials{
			AccessKeyID: id, SecretAccessKey: secret, SessionToken: getenv("AWS_SESSION_TOKEN"),
			Source: "EnvConfigCredentials",
		}}, nil
	}
	endpoint := ""
	if rel := getenv("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI"); rel != "" {
		endpoint = ecsCredentialsHost + rel
	} else if full := getenv("AWS_CONTAINER_CREDENTIALS_FULL_URI"); full != "" {
		if err := checkContainerEndpoint(full); err != nil {
			return nil, fmt.Errorf("AWS_CONTAINER_CREDENTIALS_FULL_URI: %w", err)
		}
		endpoint = full
	}
	if endpoint == "" {
		return nil, errors.New("no credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (Lambda does) or AWS_CONTAINER_CREDENTIALS_RELATIVE_URI or _FULL_URI; " +
			"the functions do not read profiles, SSO, web identity or instance metadata")
	}
	token, tokenFile := getenv("AWS_CONTAINER_AUTHORIZATION_TOKEN"), getenv("AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE")
	provider := endpointcreds.New(endpoint, func(o *endpointcreds.Options) {
		o.AuthorizationToken = token
		if tokenFile != "" {
			// Read on every refresh: the file is rotated.
			o.AuthorizationTokenProvider = endpointcreds.TokenProviderFunc(func() (string, error) {
				b, err := os.ReadFile(tokenFile)
				if err != nil {
					return "", fmt.Errorf("read AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE: %w", err)
				}
				return string(b), nil
			})
		}
	})
	return aws.NewCredentialsCache(provider, func(o *aws.CredentialsCacheOptions) {
		o.ExpiryWindow = 5 * time.Minute
	}), nil
}

// checkContainerEndpoint refuses, as the SDK does, a plain-http
// credentials endpoint on another host than a loopback address or the ECS
// and EKS agents' link-local ones.
func checkContainerEndpoint(endpoint string) error {
	u, err := url.Parse(endpoint)
	if err != nil {
		return fmt.Errorf("invalid URL: %w", err)
	}
	host := u.Hostname()
	if host == "" {
		return errors.New("no host")
	}
	if u.Scheme != "http" {
		return nil
	}
	addrs := []string{host}
	if net.ParseIP(host) == nil {
		if addrs, err = net.LookupHost(host); err != nil {
			return fmt.Errorf("resolve %q: %w", host, err)
		}
	}
	for _, a := range addrs {
		ip := net.ParseIP(a)
		if ip == nil || !(ip.IsLoopback() || ip.Equal(net.IPv4(169, 254, 170, 2)) || ip.Equal(net.IPv4(169, 254, 170, 23)) || ip.Equal(net.ParseIP("fd00:ec2::23"))) {
			return fmt.Errorf("host %q is not loopback nor an ECS or EKS credentials address; only https may go elsewhere", host)
		}
	}
	return nil
}

// envSource is the configuration source FromEnv puts in
// aws.Config.ConfigSources: the service clients (and AsyncInvoker) ask it
// for per-service endpoints and the FIPS and dual-stack settings through
// the interfaces the config package's EnvConfig implements.
type envSource struct {
	getenv          func(string) string
	ignoreEndpoints bool
	fips            aws.FIPSEndpointState
	dualStack       aws.DualStackEndpointState
	maxAttempts     int
	retryMode       aws.RetryMode
}

func readEnvSource(getenv func(string) string) (*envSource, error) {
	s := &envSource{getenv: getenv}
	var err error
	if s.ignoreEndpoints, _, err = envBool(getenv, "AWS_IGNORE_CONFIGURED_ENDPOINT_URLS"); err != nil {
		return nil, err
	}
	fips, set, err := envBool(getenv, "AWS_USE_FIPS_ENDPOINT")
	if err != nil {
		return nil, err
	}
	if set {
		s.fips = aws.FIPSEndpointStateDisabled
		if fips {
			s.fips = aws.FIPSEndpointStateEnabled
		}
	}
	dual, set, err := envBool(getenv, "AWS_USE_DUALSTACK_ENDPOINT")
	if err != nil {
		return nil, err
	}
	if set {
		s.dualStack = aws.DualStackEndpointStateDisabled
		if dual {
			s.dualStack = aws.DualStackEndpointStateEnabled
		}
	}
	if v := getenv("AWS_MAX_ATTEMPTS"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			return nil, fmt.Errorf("AWS_MAX_ATTEMPTS=%q: want a positive integer", v)
		}
		s.maxAttempts = n
	}
	if v := getenv("AWS_RETRY_MODE"); v != "" {
		if s.retryMode, err = aws.ParseRetryMode(v); err != nil {
			return nil, fmt.Errorf("AWS_RETRY_MODE: %w", err)
		}
	}
	return s, nil
}

// envBool reads a true/false variable (any case), reporting whether it is set.
func envBool(getenv func(string) string, name string) (value, set bool, err error) {
	switch v := getenv(name); {
	case v == "":
		return false, false, nil
	case strings.EqualFold(v, "true"):
		return true, true, nil
	case strings.EqualFold(v, "false"):
		return false, true, nil
	default:
		return false, false, fmt.Errorf("%s=%q: want true or false", name, v)
	}
}

// GetServiceBaseEndpoint returns AWS_ENDPOINT_URL_<SDK ID> (upper case,
// spaces as underscores: AWS_ENDPOINT_URL_SECRETS_MANAGER).
func (s *envSource) GetServiceBaseEndpoint(_ context.Context, sdkID string) (string, bool, error) {
	if s.ignoreEndpoints {
		return "", false, nil
	}
	v := s.getenv("AWS_ENDPOINT_URL_" + strings.ReplaceAll(strings.ToUpper(sdkID), " ", "_"))
	return v, v != "", nil
}

// GetIgnoreConfiguredEndpoints reports AWS_IGNORE_CONFIGURED_ENDPOINT_URLS.
func (s *envSource) GetIgnoreConfiguredEndpoints(context.Context) (bool, bool, error) {
	return s.ignoreEndpoints, s.ignoreEndpoints, nil
}

// GetUseFIPSEndpoint reports AWS_USE_FIPS_ENDPOINT.
func (s *envSource) GetUseFIPSEndpoint(context.Context) (aws.FIPSEndpointState, bool, error) {
	return s.fips, s.fips != aws.FIPSEndpointStateUnset, nil
}

// GetUseDualStackEndpoint reports AWS_USE_DUALSTACK_ENDPOINT.
func (s *envSource) GetUseDualStackEndpoint(context.Context) (aws.DualStackEndpointState, bool, error) {
	return s.dualStack, s.dualStack != aws.DualStackEndpointStateUnset, nil
}

// Local reports whether the configuration points at a local endpoint
// (AWS_ENDPOINT_URL) rather than at AWS.
func Local(cfg aws.Config) bool { return cfg.BaseEndpoint != nil && *cfg.BaseEndpoint != "" }

// S3 returns an S3 client; path-style when the endpoint is local.
func S3(cfg aws.Config) *s3.Client {
	return s3.NewFromConfig(cfg, func(o *s3.Options) {
		o.UsePathStyle = Local(cfg)
	})
}
