package awsauthz

import (
	"bytes"
	"context"
	"crypto/sha256"
	_ "embed"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
)

// Fixed identity of the local stack: every rendered ARN uses them, and moto's
// default account is the same.
const (
	Account = "123456789012"
	Region  = "us-east-1"
)

// Placeholders the template is rendered with once; Stack substitutes them.
const (
	placeholderStack  = "stkplaceholder0"
	placeholderSecret = "arn:aws:secretsmanager:" + Region + ":" + Account + ":secret:cesecretplaceholder0"
)

//go:embed render_roles.py
var renderScript []byte

// Policy is one policy attached to a role: inline (from the template or
// added by SAM) or AWS managed.
type Policy struct {
	Name     string          `json:"name"`
	Managed  bool            `json:"managed"`
	Document json.RawMessage `json:"document"`
}

// RoleRef names a role.
type RoleRef struct {
	LogicalID string `json:"logicalId"`
	Name      string `json:"name"`
	ARN       string `json:"arn"`
}

// Function is one function of the stack with its role's policies.
type Function struct {
	LogicalID string   `json:"logicalId"`
	Name      string   `json:"name"`
	Role      RoleRef  `json:"role"`
	Policies  []Policy `json:"policies"`
}

// BucketPolicy is a bucket's resource policy.
type BucketPolicy struct {
	Bucket   string          `json:"bucket"`
	Document json.RawMessage `json:"document"`
}

// Roles is what Render returns: the functions and bucket policies of one
// stack as CloudFormation would deploy them.
type Roles struct {
	Functions      []Function     `json:"functions"`
	BucketPolicies []BucketPolicy `json:"bucketPolicies"`
}

// Function returns the function with the logical id (e.g. "ExportFunction").
func (r *Roles) Function(logicalID string) (Function, bool) {
	for _, f := range r.Functions {
		if f.LogicalID == logicalID {
			return f, true
		}
	}
	return Function{}, false
}

// Template is template.yaml rendered once with placeholder names; Stack
// gives the roles of one stack.
type Template struct{ raw []byte }

// Render applies the SAM transform to the template at path and resolves its
// intrinsics (see render_roles.py; python3 with cfn-lint must be on PATH).
// The result is cached under cacheDir (keyed by the template's and the
// script's content) when cacheDir is not empty: the transform takes seconds.
func Render(ctx context.Context, path, cacheDir string) (*Template, error) {
	tpl, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	h := sha256.New()
	h.Write(tpl)
	h.Write(renderScript)
	cache := ""
	if cacheDir != "" {
		cache = filepath.Join(cacheDir, "roles-"+hex.EncodeToString(h.Sum(nil))[:16]+".json")
		if b, err := os.ReadFile(cache); err == nil {
			return &Template{raw: b}, nil
		}
	}
	dir, err := os.MkdirTemp("", "cebulk-render-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	script := filepath.Join(dir, "render_roles.py")
	if err := os.WriteFile(script, renderScript, 0o600); err != nil {
		return nil, err
	}
	overrides, _ := json.Marshal(map[string]string{"CeSecret": placeholderSecret})
	cmd := exec.CommandContext(ctx, "python3", script, path, placeholderStack, Account, Region, string(overrides))
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("render roles of %s (python3 with cfn-lint): %v\n%s", path, err, stderr.String())
	}
	var check Roles
	if err := json.Unmarshal(out, &check); err != nil || len(check.Functions) == 0 {
		return nil, fmt.Errorf("render roles of %s: no functions in the output (%v)", path, err)
	}
	if cache != "" {
		if err := os.MkdirAll(cacheDir, 0o755); err == nil {
			tmp := cache + ".tmp" + fmt.Sprint(os.Getpid())
			if os.WriteFile(tmp, out, 0o644) == nil {
				_ = os.Rename(tmp, cache)
			}
		}
	}
	return &Template{raw: out}, nil
}

// Stack returns the roles of the stack named stack whose created secret has
// the ARN secretARN.
func (t *Template) Stack(stack, secretARN string) (*Roles, error) {
	s := strings.ReplaceAll(string(t.raw), placeholderSecret, secretARN)
	s = strings.ReplaceAll(s, placeholderStack, stack)
	var r Roles
	if err := json.Unmarshal([]byte(s), &r); err != nil {
		return nil, err
	}
	return &r, nil
}

// BucketName is the data bucket of a stack ("${AWS::StackName}-data-${AWS::AccountId}").
func BucketName(stack string) string { return stack + "-data-" + Account }

// FunctionName is a function's name in a stack ("${AWS::StackName}-<short>").
func FunctionName(stack, short string) string { return stack + "-" + short }

// WithoutStatement returns a copy of r in which the role of the function
// logicalID lacks the statement sid (from any of its inline policies); it
// fails when there is no such statement.
func (r *Roles) WithoutStatement(logicalID, sid string) (*Roles, error) {
	b, err := json.Marshal(r)
	if err != nil {
		return nil, err
	}
	var c Roles
	if err := json.Unmarshal(b, &c); err != nil {
		return nil, err
	}
	removed := false
	for i, f := range c.Functions {
		if f.LogicalID != logicalID {
			continue
		}
		for j, p := range f.Policies {
			var doc map[string]any
			if err := json.Unmarshal(p.Document, &doc); err != nil {
				return nil, err
			}
			stmts, _ := doc["Statement"].([]any)
			kept := slices.DeleteFunc(slices.Clone(stmts), func(s any) bool {
				m, _ := s.(map[string]any)
				return m["Sid"] == sid
			})
			if len(kept) == len(stmts) {
				continue
			}
			removed = true
			doc["Statement"] = kept
			nb, err := json.Marshal(doc)
			if err != nil {
				return nil, err
			}
			c.Functions[i].Policies[j].Document = nb
		}
	}
	if !removed {
		return nil, fmt.Errorf("%s has no statement %q", logicalID, sid)
	}
	return &c, nil
}
