package drivers

import (
	"strings"
	"testing"
)

func TestSplitArgs(t *testing.T) {
	got, err := SplitArgs(`--exclude-table='log*' --where="id IN (1, 2)" -T audit\ log`)
	if err != nil || strings.Join(got, "|") != "--exclude-table=log*|--where=id IN (1, 2)|-T|audit log" {
		t.Fatalf("got %q, %v", got, err)
	}
	for _, bad := range []string{"--x=$HOME", "--x=`id`", "--x=$(id)", "a; b", "a > /tmp/f", "a | b", "X=1 a", "a &", `"unterminated`} {
		if _, err := SplitArgs(bad); err == nil {
			t.Errorf("SplitArgs(%q) accepted it", bad)
		}
	}
}

func TestCheckArgs(t *testing.T) {
	allowed := []Flag{{Long: "exclude-table", Short: 'T', Value: true}, {Long: "no-owner", Short: 'O'}}
	for _, ok := range [][]string{{"--exclude-table=x"}, {"--exclude-table", "x"}, {"-T", "x"}, {"-Tx"}, {"--no-owner", "-O"}} {
		if err := CheckArgs("pg_dump", ok, allowed); err != nil {
			t.Errorf("%q: %v", ok, err)
		}
	}
	for _, bad := range [][]string{{"--file=/tmp/x"}, {"-f", "/tmp/x"}, {"--no-owner=1"}, {"--exclude-table"}, {"db"}, {"-Ox"}, {"--host", "x"}, {"--"}} {
		if err := CheckArgs("pg_dump", bad, allowed); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
	if err := CheckArgs("redis", []string{"--x"}, nil); err == nil || !strings.Contains(err.Error(), "takes no extra arguments") {
		t.Errorf("no flags allowed: %v", err)
	}
}
