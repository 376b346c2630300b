package apisix

import (
	"fmt"
	"regexp"
	"strconv"
)

// evalExpr evaluates route `vars` like lua-resty-expr: a list of rules
// joined by AND, or ["AND"|"OR"|"!AND"|"!OR", expr...]; a rule is
// [var, op, value] or [var, "!", op, value].
func evalExpr(expr []any, lookup func(string) any) (bool, error) {
	if len(expr) == 0 {
		return true, nil
	}
	if op, ok := expr[0].(string); ok {
		switch op {
		case "AND", "OR", "!AND", "!OR":
			return evalLogic(op, expr[1:], lookup)
		}
		return evalRule(expr, lookup)
	}
	return evalLogic("AND", expr, lookup)
}

func evalLogic(op string, items []any, lookup func(string) any) (bool, error) {
	and := op == "AND" || op == "!AND"
	result := and
	for _, it := range items {
		sub, ok := it.([]any)
		if !ok {
			return false, fmt.Errorf("rule should be a table, got %T", it)
		}
		v, err := evalExpr(sub, lookup)
		if err != nil {
			return false, err
		}
		if and {
			result = result && v
		} else {
			result = result || v
		}
	}
	if op[0] == '!' {
		result = !result
	}
	return result, nil
}

func evalRule(rule []any, lookup func(string) any) (bool, error) {
	negate := false
	if len(rule) == 4 {
		if s, _ := rule[1].(string); s != "!" {
			return false, fmt.Errorf("bad rule: %v", rule)
		}
		negate = true
		rule = []any{rule[0], rule[2], rule[3]}
	}
	if len(rule) != 3 {
		return false, fmt.Errorf("rule too short: %v", rule)
	}
	name, ok1 := rule[0].(string)
	op, ok2 := rule[1].(string)
	if !ok1 || !ok2 {
		return false, fmt.Errorf("bad rule: %v", rule)
	}
	ok, err := compare(lookup(name), op, rule[2])
	return ok != negate, err
}

func compare(l any, op string, r any) (bool, error) {
	switch op {
	case "==":
		return equal(l, r), nil
	case "~=":
		return !equal(l, r), nil
	case ">", ">=", "<", "<=":
		a, okA := toNumber(l)
		b, okB := toNumber(r)
		if !okA || !okB {
			return false, nil
		}
		switch op {
		case ">":
			return a > b, nil
		case ">=":
			return a >= b, nil
		case "<":
			return a < b, nil
		}
		return a <= b, nil
	case "~~", "~*":
		pat, _ := r.(string)
		if op == "~*" {
			pat = "(?i)" + pat
		}
		re, err := regexp.Compile(pat)
		if err != nil {
			return false, err
		}
		s, ok := l.(string)
		return ok && re.MatchString(s), nil
	case "in":
		list, ok := r.([]any)
		if !ok {
			return false, fmt.Errorf("invalid operand for in: %v", r)
		}
		for _, x := range list {
			if equal(l, x) {
				return true, nil
			}
		}
		return false, nil
	case "has":
		list, ok := l.([]any)
		if !ok {
			return false, nil
		}
		for _, x := range list {
			if equal(x, r) {
				return true, nil
			}
		}
		return false, nil
	}
	return false, fmt.Errorf("invalid operator '%s'", op)
}

// equal follows lua-resty-expr: a number on the right converts the left
// side; otherwise values compare as they are (so true ≠ "true").
func equal(l, r any) bool {
	if l == nil {
		return false
	}
	if rn, ok := r.(float64); ok {
		ln, ok := toNumber(l)
		return ok && ln == rn
	}
	return l == r
}

func toNumber(v any) (float64, bool) {
	switch x := v.(type) {
	case float64:
		return x, true
	case string:
		f, err := strconv.ParseFloat(x, 64)
		return f, err == nil
	}
	return 0, false
}
