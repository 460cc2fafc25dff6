package awsauthz

import (
	"bufio"
	_ "embed"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
)

//go:embed evaluator.js
var evaluatorScript []byte

// ToolDir is where `make iam-simulate` installs the evaluator's npm package,
// relative to the module root.
const ToolDir = ".tools/iam-simulate"

// ErrNoTool means the npm tool is not installed.
var ErrNoTool = errors.New("awsauthz: @cloud-copilot/iam-simulate is not installed: run `make iam-simulate` (make test and make demo do)")

// FindTool returns the folder holding node_modules/@cloud-copilot/iam-simulate:
// $CEBULK_IAM_SIMULATE, else root/.tools/iam-simulate.
func FindTool(root string) (string, error) {
	dir := os.Getenv("CEBULK_IAM_SIMULATE")
	if dir == "" {
		dir = filepath.Join(root, ToolDir)
	}
	if _, err := os.Stat(filepath.Join(dir, "node_modules", "@cloud-copilot", "iam-simulate", "package.json")); err != nil {
		return "", fmt.Errorf("%w (looked in %s)", ErrNoTool, dir)
	}
	if _, err := exec.LookPath("node"); err != nil {
		return "", fmt.Errorf("awsauthz: node is not on PATH (Node 20+ runs the IAM evaluator): %v", err)
	}
	return dir, nil
}

// Request is one evaluation: may principal do action on resource?
type Request struct {
	Principal        string            `json:"principal,omitempty"` // empty: anonymous
	Action           string            `json:"action"`
	Resource         string            `json:"resource"`
	Account          string            `json:"account"` // the resource's account
	IdentityPolicies []NamedPolicy     `json:"identityPolicies"`
	ResourcePolicy   json.RawMessage   `json:"resourcePolicy,omitempty"`
	Context          map[string]string `json:"context"`
}

// NamedPolicy is an identity policy as the evaluator takes it.
type NamedPolicy struct {
	Name   string          `json:"name"`
	Policy json.RawMessage `json:"policy"`
}

// Answer is the evaluator's verdict.
type Answer struct {
	Result  string      `json:"result"` // Allowed, ExplicitlyDenied, ImplicitlyDenied or Error
	Grants  []Statement `json:"grants"`
	Denials []Statement `json:"denials"`
	Error   string      `json:"error"`
}

// Allowed reports whether the request is allowed.
func (a Answer) Allowed() bool { return a.Result == "Allowed" }

// Statement names one statement that allowed or denied a request.
type Statement struct {
	PolicyType       string `json:"policyType"` // identity, resource, ...
	PolicyIdentifier string `json:"policyIdentifier"`
	StatementID      string `json:"statementId"`
	StatementIndex   int    `json:"statementIndex"`
	DenialType       string `json:"denialType"`
}

// Name is "<policy>/<Sid>" (or "<policy>/#<index>" without a Sid).
func (s Statement) Name() string {
	p := s.PolicyIdentifier
	if s.PolicyType == "resource" {
		p = "bucket policy"
	}
	if s.StatementID != "" {
		return p + "/" + s.StatementID
	}
	if s.StatementIndex > 0 {
		return fmt.Sprintf("%s/#%d", p, s.StatementIndex)
	}
	return p
}

// Evaluator is a running evaluator.js. It is safe for concurrent use;
// requests are answered one at a time (well under a millisecond each).
type Evaluator struct {
	mu   sync.Mutex
	cmd  *exec.Cmd
	in   io.WriteCloser
	out  *bufio.Reader
	dir  string
	dead error
}

// StartEvaluator starts node with evaluator.js against the tool in toolDir.
// The process ends when Close is called or this process exits (its stdin
// closes).
func StartEvaluator(toolDir string) (*Evaluator, error) {
	dir, err := os.MkdirTemp("", "cebulk-evaluator-")
	if err != nil {
		return nil, err
	}
	script := filepath.Join(dir, "evaluator.js")
	if err := os.WriteFile(script, evaluatorScript, 0o600); err != nil {
		return nil, err
	}
	cmd := exec.Command("node", script, toolDir)
	cmd.Stderr = os.Stderr
	in, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start the IAM evaluator (node): %v", err)
	}
	return &Evaluator{cmd: cmd, in: in, out: bufio.NewReaderSize(out, 1<<16), dir: dir}, nil
}

// Evaluate answers one request.
func (e *Evaluator) Evaluate(req Request) (Answer, error) {
	b, err := json.Marshal(req)
	if err != nil {
		return Answer{}, err
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.dead != nil {
		return Answer{}, e.dead
	}
	if _, err := e.in.Write(append(b, '\n')); err != nil {
		e.dead = fmt.Errorf("IAM evaluator: %v", err)
		return Answer{}, e.dead
	}
	line, err := e.out.ReadBytes('\n')
	if err != nil {
		e.dead = fmt.Errorf("IAM evaluator stopped: %v", err)
		return Answer{}, e.dead
	}
	var a Answer
	if err := json.Unmarshal(line, &a); err != nil {
		return Answer{}, fmt.Errorf("IAM evaluator answer %q: %v", line, err)
	}
	if a.Result == "Error" {
		return a, fmt.Errorf("IAM evaluator: %s", a.Error)
	}
	return a, nil
}

// Close stops the evaluator.
func (e *Evaluator) Close() error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.dead == nil {
		e.dead = errors.New("IAM evaluator closed")
	}
	_ = e.in.Close()
	err := e.cmd.Wait()
	_ = os.RemoveAll(e.dir)
	return err
}
