package mptest

import (
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
)

// where is a parsed segmentation expression of the basic form the emulator
// understands: comparisons properties["name"] op literal, with op one of
// == != > >= < <= and literal a double-quoted string or a number, joined
// by "and"; defined(properties["name"]) and not defined(...) too.
type where []cond

type cond struct {
	name  string
	op    string // == != > >= < <= defined undefined
	str   string
	num   float64
	isNum bool
}

// parseWhere parses expr; an empty expr matches everything. Anything else
// is an error, answered 400, so a client never silently gets unfiltered
// data.
func parseWhere(expr string) (where, error) {
	expr = strings.TrimSpace(expr)
	if expr == "" {
		return nil, nil
	}
	var w where
	for part := range strings.SplitSeq(expr, " and ") {
		c, err := parseCond(strings.TrimSpace(part))
		if err != nil {
			return nil, fmt.Errorf("invalid where expression %q: %v", expr, err)
		}
		w = append(w, c)
	}
	return w, nil
}

func parseCond(s string) (cond, error) {
	if strings.HasPrefix(s, "(") && strings.HasSuffix(s, ")") {
		s = strings.TrimSpace(s[1 : len(s)-1])
	}
	negate := false
	if rest, ok := strings.CutPrefix(s, "not "); ok {
		negate, s = true, strings.TrimSpace(rest)
	}
	if inner, ok := strings.CutPrefix(s, "defined("); ok && strings.HasSuffix(inner, ")") {
		name, rest, err := parseProperty(strings.TrimSuffix(inner, ")"))
		if err != nil || strings.TrimSpace(rest) != "" {
			return cond{}, fmt.Errorf("defined() takes one properties[\"name\"]")
		}
		op := "defined"
		if negate {
			op = "undefined"
		}
		return cond{name: name, op: op}, nil
	}
	if negate {
		return cond{}, fmt.Errorf("not applies to defined() only")
	}
	name, rest, err := parseProperty(s)
	if err != nil {
		return cond{}, err
	}
	rest = strings.TrimSpace(rest)
	var op string
	for _, o := range []string{"==", "!=", ">=", "<=", ">", "<"} {
		if strings.HasPrefix(rest, o) {
			op = o
			break
		}
	}
	if op == "" {
		return cond{}, fmt.Errorf("expected a comparison after properties[%q]", name)
	}
	lit := strings.TrimSpace(rest[len(op):])
	c := cond{name: name, op: op}
	if strings.HasPrefix(lit, `"`) {
		v, err := strconv.Unquote(lit)
		if err != nil {
			return cond{}, fmt.Errorf("bad string literal %s", lit)
		}
		c.str = v
		if op != "==" && op != "!=" {
			return cond{}, fmt.Errorf("%s needs a number", op)
		}
		return c, nil
	}
	v, err := strconv.ParseFloat(lit, 64)
	if err != nil {
		return cond{}, fmt.Errorf("bad literal %q", lit)
	}
	c.num, c.isNum = v, true
	return c, nil
}

// parseProperty reads properties["name"] at the start of s.
func parseProperty(s string) (name, rest string, err error) {
	s = strings.TrimSpace(s)
	body, ok := strings.CutPrefix(s, "properties[")
	if !ok {
		return "", "", fmt.Errorf(`expected properties["name"]`)
	}
	end := strings.Index(body, `"]`)
	if end < 0 || !strings.HasPrefix(body, `"`) {
		return "", "", fmt.Errorf(`expected properties["name"]`)
	}
	name, err = strconv.Unquote(body[:end+1])
	if err != nil {
		return "", "", fmt.Errorf("bad property name %s", body[:end+1])
	}
	return name, body[end+2:], nil
}

// match reports whether props satisfies every condition.
func (w where) match(props map[string]json.RawMessage) bool {
	for _, c := range w {
		raw, ok := props[c.name]
		if ok && string(raw) == "null" {
			ok = false
		}
		switch c.op {
		case "defined":
			if !ok {
				return false
			}
			continue
		case "undefined":
			if ok {
				return false
			}
			continue
		}
		if !ok {
			if c.op == "!=" {
				continue
			}
			return false
		}
		if c.isNum {
			var v float64
			if json.Unmarshal(raw, &v) != nil {
				if s := jsonText(raw); s != "" {
					v, _ = strconv.ParseFloat(s, 64)
				}
			}
			if !compare(v, c.op, c.num) {
				return false
			}
			continue
		}
		eq := jsonText(raw) == c.str
		if (c.op == "==") != eq {
			return false
		}
	}
	return true
}

func compare(a float64, op string, b float64) bool {
	switch op {
	case "==":
		return a == b
	case "!=":
		return a != b
	case ">":
		return a > b
	case ">=":
		return a >= b
	case "<":
		return a < b
	case "<=":
		return a <= b
	}
	return false
}
