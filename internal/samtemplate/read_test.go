package samtemplate

import (
	"encoding/json"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/awslabs/goformation/v7"
	"github.com/awslabs/goformation/v7/cloudformation"
	"github.com/awslabs/goformation/v7/cloudformation/global"
	"github.com/awslabs/goformation/v7/cloudformation/serverless"
	"github.com/awslabs/goformation/v7/intrinsics"
)

// Readers for the files the tests check: template.yaml (through goformation,
// with references resolved to names), samconfig.toml, and the functions'
// config.go files.

// stack is template.yaml read three ways.
type stack struct {
	cf      *cloudformation.Template // typed, references resolved to names
	globals *global.Function
	raw     map[string]any // references resolved, as goformation was given it before adapting
	src     map[string]any // long form, references as written
}

// load reads template.yaml with the given parameter values (defaults for the
// rest); a reference it cannot resolve fails the test.
func load(t *testing.T, overrides map[string]any) *stack {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(moduleRoot(t), "template.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	r := &resolver{}
	resolved, err := intrinsics.ProcessYAML(data, &intrinsics.ProcessorOptions{
		ParameterOverrides: overrides,
		IntrinsicHandlerOverrides: map[string]intrinsics.IntrinsicHandler{
			"Ref":        r.ref,
			"Fn::GetAtt": r.getAtt,
			"Fn::Sub":    r.sub,
			"Fn::If":     r.fnIf,
			"Fn::Split":  r.split,
		},
	})
	if err != nil {
		t.Fatalf("resolve template.yaml: %v", err)
	}
	for _, e := range r.errs {
		t.Errorf("template.yaml: %s", e)
	}
	s := &stack{}
	if err := json.Unmarshal(resolved, &s.raw); err != nil {
		t.Fatal(err)
	}
	long, err := intrinsics.ProcessYAML(data, &intrinsics.ProcessorOptions{NoProcess: true})
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(long, &s.src); err != nil {
		t.Fatal(err)
	}
	adapted, err := json.Marshal(forGoformation(t, s.raw))
	if err != nil {
		t.Fatal(err)
	}
	s.cf, err = goformation.ParseJSONWithOptions(adapted, &intrinsics.ProcessorOptions{NoProcess: true})
	if err != nil {
		t.Fatalf("goformation: %v", err)
	}
	if g, ok := s.cf.Globals["Function"].(*global.Function); ok {
		s.globals = g
	} else {
		s.globals = &global.Function{}
	}
	return s
}

// forGoformation returns a copy of the resolved template that goformation
// v7.14.9 can decode (it refuses properties it does not model): the
// properties removed here are checked on s.raw instead. Environment values
// become strings, as CloudFormation makes them.
func forGoformation(t *testing.T, raw map[string]any) map[string]any {
	t.Helper()
	b, err := json.Marshal(raw)
	if err != nil {
		t.Fatal(err)
	}
	var c map[string]any
	if err := json.Unmarshal(b, &c); err != nil {
		t.Fatal(err)
	}
	fixFunction := func(props map[string]any) {
		delete(props, "LoggingConfig")
		if vars, ok := dig(props, "Environment", "Variables").(map[string]any); ok {
			for k, v := range vars {
				vars[k] = scalar(v)
			}
		}
	}
	if g, ok := dig(c, "Globals", "Function").(map[string]any); ok {
		fixFunction(g)
	}
	resources, _ := c["Resources"].(map[string]any)
	for _, res := range resources {
		res, _ := res.(map[string]any)
		props, _ := res["Properties"].(map[string]any)
		if props == nil {
			continue
		}
		switch res["Type"] {
		case "AWS::Serverless::Function":
			fixFunction(props)
		case "AWS::Serverless::HttpApi":
			if auth, ok := props["Auth"].(map[string]any); ok {
				delete(auth, "EnableIamAuthorizer")
			}
		}
	}
	return c
}

// resolver resolves intrinsic functions the way the tests want them: Ref to a
// resource gives its logical ID, Fn::GetAtt gives "LogicalID.Attribute", Ref
// to a parameter gives its default (or override), pseudo parameters give the
// test constants, Fn::Sub and Fn::If follow. Anything it cannot resolve is
// recorded in errs.
type resolver struct{ errs []string }

func (r *resolver) fail(format string, args ...any) {
	r.errs = append(r.errs, fmt.Sprintf(format, args...))
}

func (r *resolver) ref(_ string, input, tpl any) any {
	name, ok := input.(string)
	if !ok {
		r.fail("Ref %v: not a name", input)
		return nil
	}
	v, err := lookupRef(name, tpl)
	if err != nil {
		r.fail("%v", err)
	}
	return v
}

func (r *resolver) getAtt(_ string, input, tpl any) any {
	var res, attr string
	switch in := input.(type) {
	case string:
		res, attr, _ = strings.Cut(in, ".")
	case []any:
		if len(in) == 2 {
			res, _ = in[0].(string)
			attr, _ = in[1].(string)
		}
	}
	if _, ok := section(tpl, "Resources")[res]; !ok || attr == "" {
		r.fail("Fn::GetAtt %v: no such resource attribute", input)
		return nil
	}
	return res + "." + attr
}

func (r *resolver) sub(_ string, input, tpl any) any {
	var src string
	vars := map[string]any{}
	switch in := input.(type) {
	case string:
		src = in
	case []any:
		if len(in) == 2 {
			src, _ = in[0].(string)
			vars, _ = in[1].(map[string]any)
		}
	}
	return subVar.ReplaceAllStringFunc(src, func(m string) string {
		name := m[2 : len(m)-1]
		if lit, ok := strings.CutPrefix(name, "!"); ok {
			return "${" + lit + "}"
		}
		if v, ok := vars[name]; ok {
			return scalar(v)
		}
		if strings.Contains(name, ".") {
			res, attr, _ := strings.Cut(name, ".")
			return scalar(r.getAtt("Fn::GetAtt", []any{res, attr}, tpl))
		}
		v, err := lookupRef(name, tpl)
		if err != nil {
			r.fail("Fn::Sub %q: %v", src, err)
		}
		return scalar(v)
	})
}

// split is Fn::Split giving []any, so that Fn::Join (goformation's) can
// join its result.
func (r *resolver) split(_ string, input, _ any) any {
	args, ok := input.([]any)
	if ok && len(args) == 2 {
		delim, ok1 := args[0].(string)
		src, ok2 := args[1].(string)
		if ok1 && ok2 {
			var out []any
			for _, p := range strings.Split(src, delim) {
				out = append(out, p)
			}
			return out
		}
	}
	r.fail("Fn::Split %v: want [delimiter, string]", input)
	return nil
}

func (r *resolver) fnIf(_ string, input, tpl any) any {
	args, ok := input.([]any)
	if !ok || len(args) != 3 {
		r.fail("Fn::If %v: want [condition, then, else]", input)
		return nil
	}
	cond, err := evalCondition(map[string]any{"Condition": args[0]}, tpl, 0)
	if err != nil {
		r.fail("Fn::If: %v", err)
		return nil
	}
	if cond {
		return args[1]
	}
	return args[2]
}

func lookupRef(name string, tpl any) (any, error) {
	switch name {
	case "AWS::StackName":
		return testStack, nil
	case "AWS::AccountId":
		return testAccount, nil
	case "AWS::Region":
		return testRegion, nil
	case "AWS::Partition":
		return "aws", nil
	case "AWS::URLSuffix":
		return "amazonaws.com", nil
	case "AWS::NoValue":
		return nil, nil
	}
	if p, ok := section(tpl, "Parameters")[name].(map[string]any); ok {
		d, ok := p["Default"]
		if !ok {
			return nil, fmt.Errorf("parameter %s has no default", name)
		}
		return d, nil
	}
	if _, ok := section(tpl, "Resources")[name]; ok {
		return name, nil
	}
	return nil, fmt.Errorf("Ref %s: no such parameter or resource", name)
}

// evalCondition evaluates a condition expression of the unresolved template.
func evalCondition(expr, tpl any, depth int) (bool, error) {
	if depth > 20 {
		return false, fmt.Errorf("conditions nest too deep")
	}
	if b, ok := expr.(bool); ok {
		return b, nil
	}
	m, ok := expr.(map[string]any)
	if !ok || len(m) != 1 {
		return false, fmt.Errorf("condition %v: not a condition function", expr)
	}
	for fn, arg := range m {
		args, _ := arg.([]any)
		switch fn {
		case "Condition":
			name, _ := arg.(string)
			c, ok := section(tpl, "Conditions")[name]
			if !ok {
				return false, fmt.Errorf("no condition %q", name)
			}
			return evalCondition(c, tpl, depth+1)
		case "Fn::Equals":
			if len(args) != 2 {
				return false, fmt.Errorf("Fn::Equals %v: want two values", arg)
			}
			var vals [2]string
			for i, a := range args {
				v, err := condValue(a, tpl)
				if err != nil {
					return false, err
				}
				vals[i] = scalar(v)
			}
			return vals[0] == vals[1], nil
		case "Fn::Not":
			if len(args) != 1 {
				return false, fmt.Errorf("Fn::Not %v: want one condition", arg)
			}
			b, err := evalCondition(args[0], tpl, depth+1)
			return !b, err
		case "Fn::And", "Fn::Or":
			and := fn == "Fn::And"
			for _, a := range args {
				b, err := evalCondition(a, tpl, depth+1)
				if err != nil {
					return false, err
				}
				if b != and {
					return b, nil
				}
			}
			return and, nil
		}
		return false, fmt.Errorf("condition function %s not supported", fn)
	}
	panic("unreachable")
}

// condValue evaluates a value inside a condition: a literal, a Ref, or
// Fn::Select of Fn::Split.
func condValue(v, tpl any) (any, error) {
	m, ok := v.(map[string]any)
	if !ok || len(m) != 1 {
		return v, nil
	}
	if ref, ok := m["Ref"].(string); ok {
		return lookupRef(ref, tpl)
	}
	if args, ok := m["Fn::Split"].([]any); ok && len(args) == 2 {
		sep, _ := args[0].(string)
		src, err := condValue(args[1], tpl)
		if err != nil {
			return nil, err
		}
		var out []any
		for _, p := range strings.Split(scalar(src), sep) {
			out = append(out, p)
		}
		return out, nil
	}
	if args, ok := m["Fn::Select"].([]any); ok && len(args) == 2 {
		i, err := strconv.Atoi(scalar(args[0]))
		if err != nil {
			return nil, fmt.Errorf("Fn::Select %v: bad index", args)
		}
		list, err := condValue(args[1], tpl)
		if err != nil {
			return nil, err
		}
		items, _ := list.([]any)
		if i < 0 || i >= len(items) {
			return nil, fmt.Errorf("Fn::Select %v: index out of range", args)
		}
		return items[i], nil
	}
	return nil, fmt.Errorf("condition value %v: not supported", v)
}

// merged is a function's properties after SAM merges Globals into them.
type merged struct {
	Runtime       string
	Architectures []string
	Handler       string
	Timeout       int
	MemorySize    int
	Tracing       string
	Env           map[string]string
}

func mergeGlobals(g *global.Function, f *serverless.Function) merged {
	m := merged{
		Runtime:    first(f.Runtime, g.Runtime),
		Handler:    first(f.Handler, g.Handler),
		Tracing:    first(f.Tracing, g.Tracing),
		Timeout:    first(f.Timeout, g.Timeout),
		MemorySize: first(f.MemorySize, g.MemorySize),
		Env:        map[string]string{},
	}
	m.Architectures = f.Architectures
	if m.Architectures == nil && g.Architectures != nil {
		m.Architectures = *g.Architectures
	}
	if g.Environment != nil {
		for k, v := range g.Environment.Variables {
			m.Env[k] = v
		}
	}
	if f.Environment != nil {
		for k, v := range f.Environment.Variables {
			m.Env[k] = v
		}
	}
	return m
}

func first[T any](ps ...*T) T {
	for _, p := range ps {
		if p != nil {
			return *p
		}
	}
	var zero T
	return zero
}

func getFunction(t *testing.T, s *stack, f function) *serverless.Function {
	t.Helper()
	fn, err := s.cf.GetServerlessFunctionWithName(f.logicalID)
	if err != nil {
		t.Fatalf("%s: %v", f.logicalID, err)
	}
	return fn
}

func paramDefault(t *testing.T, s *stack, name string) string {
	t.Helper()
	p, ok := s.cf.Parameters[name]
	if !ok {
		t.Fatalf("no parameter %s", name)
	}
	return scalar(p.Default)
}

func paramInt(t *testing.T, s *stack, name string) int {
	t.Helper()
	n, err := strconv.Atoi(paramDefault(t, s, name))
	if err != nil {
		t.Fatalf("parameter %s: %v", name, err)
	}
	return n
}

func transform(cf *cloudformation.Template) string {
	if cf.Transform == nil {
		return ""
	}
	if cf.Transform.String != nil {
		return *cf.Transform.String
	}
	if cf.Transform.StringArray != nil {
		return strings.Join(*cf.Transform.StringArray, ",")
	}
	return ""
}

// statements returns the statements of an IAM policy document.
func statements(doc any) []map[string]any {
	var out []map[string]any
	d, _ := doc.(map[string]any)
	switch st := d["Statement"].(type) {
	case map[string]any:
		out = append(out, st)
	case []any:
		for _, s := range st {
			if m, ok := s.(map[string]any); ok {
				out = append(out, m)
			}
		}
	}
	return out
}

// stringList reads a string or a list of strings.
func stringList(v any) []string {
	switch v := v.(type) {
	case string:
		return []string{v}
	case []string:
		return v
	case []any:
		var out []string
		for _, e := range v {
			out = append(out, scalar(e))
		}
		return out
	}
	return nil
}

func section(tpl any, name string) map[string]any {
	m, _ := tpl.(map[string]any)
	s, _ := m[name].(map[string]any)
	return s
}

func dig(v any, path ...string) any {
	for _, k := range path {
		m, ok := v.(map[string]any)
		if !ok {
			return nil
		}
		v = m[k]
	}
	return v
}

// scalar renders a resolved value as CloudFormation passes it to a string
// property.
func scalar(v any) string {
	switch v := v.(type) {
	case nil:
		return ""
	case string:
		return v
	case float64:
		return strconv.FormatFloat(v, 'f', -1, 64)
	case int:
		return strconv.Itoa(v)
	case bool:
		return strconv.FormatBool(v)
	}
	b, _ := json.Marshal(v)
	return string(b)
}

func deref[T any](p *T) T {
	if p == nil {
		var zero T
		return zero
	}
	return *p
}

// moduleRoot finds the directory holding go.mod, from the test's working
// directory upwards.
func moduleRoot(t *testing.T) string {
	t.Helper()
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatal("no go.mod above the working directory")
		}
		dir = parent
	}
}

// getenvNames parses the package in dir (without its tests) and returns the
// names passed to calls of a function named getenv, each with the position
// of its first use. Names must be string literals or string constants.
func getenvNames(dir string) (map[string]string, error) {
	files, err := filepath.Glob(filepath.Join(dir, "*.go"))
	if err != nil {
		return nil, err
	}
	fset := token.NewFileSet()
	var parsed []*ast.File
	consts := map[string]string{}
	for _, name := range files {
		if strings.HasSuffix(name, "_test.go") {
			continue
		}
		f, err := parser.ParseFile(fset, name, nil, parser.SkipObjectResolution)
		if err != nil {
			return nil, err
		}
		parsed = append(parsed, f)
		for _, d := range f.Decls {
			gd, ok := d.(*ast.GenDecl)
			if !ok || gd.Tok != token.CONST {
				continue
			}
			for _, spec := range gd.Specs {
				vs := spec.(*ast.ValueSpec)
				for i, id := range vs.Names {
					if i < len(vs.Values) {
						if lit, ok := vs.Values[i].(*ast.BasicLit); ok && lit.Kind == token.STRING {
							consts[id.Name], _ = strconv.Unquote(lit.Value)
						}
					}
				}
			}
		}
	}
	names := map[string]string{}
	var bad []string
	for _, f := range parsed {
		ast.Inspect(f, func(n ast.Node) bool {
			call, ok := n.(*ast.CallExpr)
			if !ok || len(call.Args) != 1 {
				return true
			}
			switch fn := call.Fun.(type) {
			case *ast.Ident:
				if fn.Name != "getenv" {
					return true
				}
			case *ast.SelectorExpr:
				if fn.Sel.Name != "getenv" {
					return true
				}
			default:
				return true
			}
			pos := fset.Position(call.Pos())
			where := fmt.Sprintf("%s:%d", filepath.Base(pos.Filename), pos.Line)
			var name string
			switch arg := call.Args[0].(type) {
			case *ast.BasicLit:
				if arg.Kind == token.STRING {
					name, _ = strconv.Unquote(arg.Value)
				}
			case *ast.Ident:
				name = consts[arg.Name]
			}
			if name == "" {
				bad = append(bad, where)
				return true
			}
			if _, seen := names[name]; !seen {
				names[name] = where
			}
			return true
		})
	}
	if len(bad) > 0 {
		return nil, fmt.Errorf("%s: getenv called with something other than a string literal or constant at %s; name the variable literally so the environment contract can be checked",
			dir, strings.Join(bad, ", "))
	}
	return names, nil
}

// readTOML reads the subset of TOML samconfig.toml uses: [section] headers,
// key = value lines, basic and literal strings, booleans, numbers and
// one-line arrays of strings.
func readTOML(path string) (map[string]map[string]any, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	out := map[string]map[string]any{"": {}}
	section := ""
	for i, line := range strings.Split(string(data), "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		if strings.HasPrefix(line, "[") {
			section = strings.TrimSpace(strings.Trim(line, "[]"))
			if out[section] == nil {
				out[section] = map[string]any{}
			}
			continue
		}
		k, raw, ok := strings.Cut(line, "=")
		if !ok {
			return nil, fmt.Errorf("%s:%d: want key = value", path, i+1)
		}
		v, err := tomlValue(strings.TrimSpace(raw))
		if err != nil {
			return nil, fmt.Errorf("%s:%d: %v", path, i+1, err)
		}
		out[section][strings.TrimSpace(k)] = v
	}
	return out, nil
}

func tomlValue(raw string) (any, error) {
	switch {
	case strings.HasPrefix(raw, `"`):
		end := strings.LastIndex(raw, `"`)
		return strconv.Unquote(raw[:end+1])
	case strings.HasPrefix(raw, "'"):
		end := strings.LastIndex(raw, "'")
		if end == 0 {
			return nil, fmt.Errorf("unterminated string %s", raw)
		}
		return raw[1:end], nil
	case strings.HasPrefix(raw, "["):
		var list []string
		err := json.Unmarshal([]byte(raw), &list)
		return list, err
	case raw == "true" || raw == "false":
		return raw == "true", nil
	}
	if before, _, ok := strings.Cut(raw, "#"); ok {
		raw = strings.TrimSpace(before)
	}
	return strconv.ParseFloat(raw, 64)
}

// parameterOverrides reads SAM's parameter_overrides: one string of
// Key=Value pairs (values optionally quoted), or a list of "Key=Value".
func parameterOverrides(v any) (map[string]string, error) {
	var pairs []string
	switch v := v.(type) {
	case nil:
		return nil, nil
	case []string:
		pairs = v
	case string:
		var cur strings.Builder
		var quote rune
		for _, r := range v {
			switch {
			case quote != 0 && r == quote:
				quote = 0
			case quote == 0 && (r == '"' || r == '\''):
				quote = r
			case quote == 0 && (r == ' ' || r == '\t'):
				if cur.Len() > 0 {
					pairs = append(pairs, cur.String())
					cur.Reset()
				}
			default:
				cur.WriteRune(r)
			}
		}
		if quote != 0 {
			return nil, fmt.Errorf("unterminated quote in %q", v)
		}
		if cur.Len() > 0 {
			pairs = append(pairs, cur.String())
		}
	default:
		return nil, fmt.Errorf("%v is neither a string nor a list", v)
	}
	out := map[string]string{}
	for _, p := range pairs {
		k, val, ok := strings.Cut(p, "=")
		if !ok || k == "" {
			return nil, fmt.Errorf("%q is not Key=Value", p)
		}
		out[k] = strings.Trim(val, `"'`)
	}
	return out, nil
}
