package drivers

import (
	"os"
	"strings"
)

// A tool never gets Remora's own environment: the agent's holds the storage
// keys, the SMTP password, the signing key and the encryption identity, which
// a dump tool has no use for and which its crash reports, debug output or
// plugins could carry off. Each tool gets the few variables every program
// needs, those of its own kind its driver passes on, and what the driver sets.

// commonEnv are the variables of Remora's environment every tool gets: where
// programs are, the home directory (~/.pgpass), the locale, the time zone and
// the temporary directory. A name ending in "*" is a prefix.
var commonEnv = []string{"PATH", "HOME", "LANG", "LC_*", "TZ", "TMPDIR"}

// neverEnv are never passed on, whatever a driver asks: Remora's settings and
// secrets, the storage's, the encryption's, the dynamic loader's hooks, and
// the database clients' password variables (Remora's own PGPASSWORD
// included): a tool gets its password in a file (SecretFile), since
// another process of the same user reads a process's environment.
var neverEnv = []string{"AWS_*", "AZURE_*", "REMORA_*", "AGE_*", "LD_PRELOAD", "LD_LIBRARY_PATH", "LD_AUDIT",
	"PGPASSWORD", "MYSQL_PWD", "REDISCLI_AUTH"}

// ToolEnv is the environment of a tool: from Remora's environment, commonEnv
// and the variables named in pass (NAME, or PREFIX* for every name that
// begins with PREFIX); then set (NAME=value), which replaces a variable of the
// same name; never one of neverEnv.
func ToolEnv(pass []string, set ...string) []string {
	setNames := make([]string, len(set))
	for i, kv := range set {
		setNames[i], _, _ = strings.Cut(kv, "=")
	}
	var env []string
	for _, kv := range os.Environ() {
		name, _, _ := strings.Cut(kv, "=")
		if (matches(name, commonEnv) || matches(name, pass)) && !matches(name, setNames) {
			env = append(env, kv)
		}
	}
	return withoutNever(append(env, set...))
}

// matches reports whether name is one of names, where a name ending in "*"
// stands for every name that begins with what precedes it.
func matches(name string, names []string) bool {
	for _, n := range names {
		if prefix, ok := strings.CutSuffix(n, "*"); ok && strings.HasPrefix(name, prefix) || n == name {
			return true
		}
	}
	return false
}

// withoutNever drops from env the variables no tool may get: the last guard
// for an environment a driver built itself.
func withoutNever(env []string) []string {
	out := make([]string, 0, len(env))
	for _, kv := range env {
		if name, _, _ := strings.Cut(kv, "="); !matches(name, neverEnv) {
			out = append(out, kv)
		}
	}
	return out
}
