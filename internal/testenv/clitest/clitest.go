// Package clitest holds the end-to-end test helpers that read what remora
// prints in Remora's own types (a backup's manifest, the agent's status).
// They are apart from testenv because the packages that define those types
// use testenv in their own tests.
package clitest

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"remora.dev/remora/control"
	"remora.dev/remora/internal/testenv"
	"remora.dev/remora/repo"
)

// ListItem is one backup in `remora list --json`.
type ListItem = repo.Listing

// List runs `remora list --json`.
func List(t testing.TB, r *testenv.Remora, env []string) []ListItem {
	t.Helper()
	res := r.Must(t, env, "list", "--json")
	var items []ListItem
	if err := json.Unmarshal([]byte(res.Stdout), &items); err != nil {
		t.Fatalf("list --json: %v\n%s", err, res.Stdout)
	}
	return items
}

// Status runs `remora status --json`.
func Status(t testing.TB, r *testenv.Remora, env []string) control.Status {
	t.Helper()
	res := r.Must(t, env, "status", "--json")
	var st control.Status
	if err := json.Unmarshal([]byte(res.Stdout), &st); err != nil {
		t.Fatalf("status --json: %v\n%s", err, res.Stdout)
	}
	return st
}

// StartAgent starts `remora agent` with env and waits until its control
// socket answers. Its logs are checked for the canary when the test ends.
func StartAgent(t testing.TB, r *testenv.Remora, env []string, socket string) *testenv.Process {
	t.Helper()
	a := r.Start(t, env, "agent")
	for start := time.Now(); ; time.Sleep(20 * time.Millisecond) {
		if c, err := control.Dial(socket); err == nil {
			if _, err := c.Status(context.Background()); err == nil {
				return a
			}
		}
		if a.Exited() {
			t.Fatalf("the agent exited:\n%s", a.Logs())
		}
		if time.Since(start) > 30*time.Second {
			t.Fatalf("the agent did not start:\n%s", a.Logs())
		}
	}
}
