package perftest

import (
	"os/exec"
	"strings"
	"testing"
)

// heavySDKPackages are AWS SDK packages whose initialisation alone cost
// the functions most of their cold start (README, Performance): the config
// package and the clients it links (SSO, SSO OIDC, Sign-In, STS, IMDS) and
// the Lambda and Secrets Manager clients. awsenv.FromEnv, AsyncInvoker and
// SecretReader replace them.
var heavySDKPackages = []string{
	"github.com/aws/aws-sdk-go-v2/config",
	"github.com/aws/aws-sdk-go-v2/feature/ec2/imds",
	"github.com/aws/aws-sdk-go-v2/service/lambda",
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager",
	"github.com/aws/aws-sdk-go-v2/service/signin",
	"github.com/aws/aws-sdk-go-v2/service/sso",
	"github.com/aws/aws-sdk-go-v2/service/ssooidc",
	"github.com/aws/aws-sdk-go-v2/service/sts",
	// Test packages: testing registers its flags at initialisation and
	// httptest one of its own.
	"testing",
	"net/http/httptest",
}

// TestFunctionsLinkNoSDKConfig checks that no function links a package of
// heavySDKPackages: Go initialises every linked package at a cold start,
// used or not, so one import (of awsenv/defaultchain, say) brings the cost
// back.
func TestFunctionsLinkNoSDKConfig(t *testing.T) {
	for _, f := range functions {
		if !strings.HasPrefix(f.pkg, "./functions/") && f.name != "floor-sdk" {
			continue
		}
		t.Run(f.name, func(t *testing.T) {
			cmd := exec.Command("go", "list", "-deps", "-tags", "lambda.norpc", f.pkg)
			cmd.Dir = moduleRoot(t)
			out, err := cmd.Output()
			if err != nil {
				t.Fatalf("go list -deps %s: %v", f.pkg, err)
			}
			deps := map[string]bool{}
			for p := range strings.FieldsSeq(string(out)) {
				deps[p] = true
			}
			for _, p := range heavySDKPackages {
				if deps[p] {
					t.Errorf("%s links %s", f.pkg, p)
				}
			}
		})
	}
}
