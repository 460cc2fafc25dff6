package awsauthz

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
)

// Usage records which statement allowed which action, per role, so the
// statements (and actions within them) nothing used can be reported.
type Usage struct {
	mu   sync.Mutex
	used map[string]map[string]bool // "<role>|<policy>/<sid>" -> actions
}

// NewUsage returns an empty record.
func NewUsage() *Usage { return &Usage{used: map[string]map[string]bool{}} }

func (u *Usage) record(fn Function, action string, grants []Statement) {
	if u == nil {
		return
	}
	u.mu.Lock()
	defer u.mu.Unlock()
	for _, g := range grants {
		if g.PolicyType != "identity" {
			continue
		}
		k := fn.Role.LogicalID + "|" + g.Name()
		if u.used[k] == nil {
			u.used[k] = map[string]bool{}
		}
		u.used[k][strings.ToLower(action)] = true
	}
}

// Save merges this record into the JSON file at path (several test
// binaries write their own files; Unused reads them all).
func (u *Usage) Save(path string) error {
	u.mu.Lock()
	b, err := json.MarshalIndent(u.used, "", " ")
	u.mu.Unlock()
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	tmp := fmt.Sprintf("%s.tmp%d", path, os.Getpid())
	if err := os.WriteFile(tmp, b, 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// LoadUsage merges the records saved in files.
func LoadUsage(files ...string) (*Usage, error) {
	u := NewUsage()
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			return nil, err
		}
		var m map[string]map[string]bool
		if err := json.Unmarshal(b, &m); err != nil {
			return nil, fmt.Errorf("%s: %v", f, err)
		}
		for k, acts := range m {
			if u.used[k] == nil {
				u.used[k] = map[string]bool{}
			}
			for a := range acts {
				u.used[k][a] = true
			}
		}
	}
	return u, nil
}

// Unused lists, per role of r, the Allow statements of its inline policies
// that allowed nothing, and the actions of the others that were never
// allowed by them. AWS managed policies (logging, tracing: used by the
// Lambda service, not by the code) are left out.
func (u *Usage) Unused(r *Roles) []string {
	u.mu.Lock()
	defer u.mu.Unlock()
	var out []string
	for _, fn := range r.Functions {
		for _, p := range fn.Policies {
			if p.Managed {
				continue
			}
			var doc struct {
				Statement []struct {
					Sid    string
					Effect string
					Action any
				}
			}
			if json.Unmarshal(p.Document, &doc) != nil {
				continue
			}
			for i, s := range doc.Statement {
				if s.Effect != "Allow" {
					continue
				}
				st := Statement{PolicyType: "identity", PolicyIdentifier: p.Name, StatementID: s.Sid, StatementIndex: i + 1}
				used := u.used[fn.Role.LogicalID+"|"+st.Name()]
				actions := actionList(s.Action)
				if len(used) == 0 {
					out = append(out, fmt.Sprintf("%s: statement %s (%s) allowed nothing", fn.Role.LogicalID, st.Name(), strings.Join(actions, ", ")))
					continue
				}
				var never []string
				for _, a := range actions {
					if !strings.Contains(a, "*") && !used[strings.ToLower(a)] {
						never = append(never, a)
					}
				}
				if len(never) > 0 {
					out = append(out, fmt.Sprintf("%s: statement %s never allowed %s", fn.Role.LogicalID, st.Name(), strings.Join(never, ", ")))
				}
			}
		}
	}
	sort.Strings(out)
	return slices.Compact(out)
}

func actionList(a any) []string {
	switch v := a.(type) {
	case string:
		return []string{v}
	case []any:
		var out []string
		for _, x := range v {
			if s, ok := x.(string); ok {
				out = append(out, s)
			}
		}
		return out
	}
	return nil
}
