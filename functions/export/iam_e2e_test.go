package main

import (
	"strings"
	"testing"

	"github.com/cebulk/cebulk/internal/awsauthz"
	"github.com/cebulk/cebulk/internal/lambdatest"
)

// TestE2EMissingStatementIsNamed proves the local stack's IAM enforcement
// bites: the real bootstrap runs with ExportFunction's role minus one
// statement of template.yaml, the scheduled run fails with S3's
// AccessDenied, and the denial names the call, the action and the
// statement the role lacks.
func TestE2EMissingStatementIsNamed(t *testing.T) {
	tests := []struct {
		name   string
		sid    string // removed from ExportFunction's role
		reason string // Denial.Reason
		action string // in the handler's error and the denial
		key    string // the object the run could not read
	}{
		{
			name: "state objects", sid: "StateObjects", reason: "ImplicitlyDenied",
			action: "s3:GetObject", key: "state/watermarks/activities.json",
		},
		{
			// The first run reads a watermark that does not exist yet: S3
			// answers 404 only to a caller that may list the bucket.
			name: "missing-key rule", sid: "ListDataBucket", reason: "MissingKey",
			action: "s3:ListBucket", key: "state/watermarks/activities.json",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			x := startE2EWith(t, nil, lambdatest.StackOptions{
				Roles: func(r *awsauthz.Roles) (*awsauthz.Roles, error) { return r.WithoutStatement("ExportFunction", tc.sid) },
			})
			x.stack.ExpectDenials()
			msg := x.invokeFailing(t, map[string]string{"action": "run"})
			if !strings.Contains(msg, "AccessDenied") || !strings.Contains(msg, tc.action) || !strings.Contains(msg, tc.key) {
				t.Errorf("handler error = %q, want S3's AccessDenied for %s reading %s", msg, tc.action, tc.key)
			}
			denials := x.stack.Denials()
			if len(denials) == 0 {
				t.Fatalf("no request denied with %s removed", tc.sid)
			}
			d := denials[0]
			if d.Function != "ExportFunction" || d.Reason != tc.reason || d.Action != tc.action ||
				!strings.Contains(d.Operation, tc.key) || !strings.Contains(d.Statements, "ExportFunctionRolePolicy0/"+tc.sid) {
				t.Errorf("denial = %s\nwant %s %s of %s naming the missing statement ExportFunctionRolePolicy0/%s", d, tc.reason, tc.action, tc.key, tc.sid)
			}
		})
	}
}
