package drivers

import (
	"fmt"
	"strings"

	"mvdan.cc/sh/v3/expand"
	"mvdan.cc/sh/v3/syntax"
)

// SplitArgs splits extra dump arguments as a shell would split a command's
// arguments: quotes, backslashes and braces work; variables, command
// substitution, redirections, pipes and lists are refused, since nothing
// here runs a shell.
func SplitArgs(s string) ([]string, error) {
	if strings.TrimSpace(s) == "" {
		return nil, nil
	}
	bad := func(why string) error {
		return fmt.Errorf("dump args %q: %s; give only flags, quoted as in a shell", s, why)
	}
	f, err := syntax.NewParser().Parse(strings.NewReader(s), "")
	if err != nil {
		return nil, bad(err.Error())
	}
	if len(f.Stmts) != 1 {
		return nil, bad("more than one command")
	}
	st := f.Stmts[0]
	call, ok := st.Cmd.(*syntax.CallExpr)
	if !ok || len(st.Redirs) > 0 || st.Background || st.Negated || st.Coprocess || len(call.Assigns) > 0 {
		return nil, bad("redirections, pipes, assignments and the like are not arguments")
	}
	var walkErr error
	syntax.Walk(call, func(n syntax.Node) bool {
		switch n.(type) {
		case *syntax.ParamExp, *syntax.CmdSubst, *syntax.ArithmExp, *syntax.ProcSubst, *syntax.ExtGlob:
			walkErr = bad("variables and substitutions are not expanded")
			return false
		}
		return true
	})
	if walkErr != nil {
		return nil, walkErr
	}
	args, err := expand.Fields(&expand.Config{Env: expand.ListEnviron()}, call.Args...)
	if err != nil {
		return nil, bad(err.Error())
	}
	return args, nil
}

// Flag describes an extra dump flag a driver accepts.
type Flag struct {
	Long  string // without the dashes: "exclude-table"
	Short byte   // 0 if none: 'T'
	Value bool   // takes a value: --name=V, --name V, -xV or -x V
}

// CheckArgs accepts only the allowed flags, each with its value, and no
// positional arguments. Everything that writes files, changes the connection
// or runs programs is left out of every driver's list, so it is refused.
func CheckArgs(tool string, args []string, allowed []Flag) error {
	find := func(long string, short byte) (Flag, bool) {
		for _, f := range allowed {
			if long != "" && f.Long == long || short != 0 && f.Short == short {
				return f, true
			}
		}
		return Flag{}, false
	}
	refuse := func(arg string) error {
		var names []string
		for _, f := range allowed {
			names = append(names, "--"+f.Long)
		}
		if len(names) == 0 {
			return fmt.Errorf("dump args: %s takes no extra arguments (got %q)", tool, arg)
		}
		return fmt.Errorf("dump args: %q is not allowed for %s: flags that write files, change the connection or run programs are refused; allowed: %s", arg, tool, strings.Join(names, " "))
	}
	for i := 0; i < len(args); i++ {
		a := args[i]
		switch {
		case strings.HasPrefix(a, "--"):
			name, _, hasValue := strings.Cut(a[2:], "=")
			f, ok := find(name, 0)
			if !ok || name == "" || hasValue && !f.Value {
				return refuse(a)
			}
			if f.Value && !hasValue {
				if i+1 >= len(args) {
					return fmt.Errorf("dump args: %s needs a value", a)
				}
				i++
			}
		case strings.HasPrefix(a, "-") && len(a) >= 2:
			f, ok := find("", a[1])
			if !ok {
				return refuse(a)
			}
			if f.Value && len(a) == 2 {
				if i+1 >= len(args) {
					return fmt.Errorf("dump args: %s needs a value", a)
				}
				i++
			} else if !f.Value && len(a) > 2 {
				return refuse(a) // combined short flags: spell them out
			}
		default:
			return fmt.Errorf("dump args: %q is not a flag: databases are chosen with --databases", a)
		}
	}
	return nil
}
