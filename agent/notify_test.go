package agent

import (
	"strings"
	"testing"

	"remora.dev/remora/agent/notify"
	"remora.dev/remora/control"
	"remora.dev/remora/internal/redact"
	"remora.dev/remora/internal/testenv"
)

// TestFailureNotificationIsMasked: a failed run's error that quotes a
// secret (in any of the forms redact knows: as it is, JSON-escaped) reaches
// the notification webhook masked.
func TestFailureNotificationIsMasked(t *testing.T) {
	secret := `pw"with\quote-` + testenv.Canary
	redact.Add(secret)
	hook := testenv.StartReceiver(t)
	a := newTestAgent(t, nil, "")
	a.cfg.Notify = notify.Config{WebhookURL: hook.URL + "/hook"}
	a.notify(&control.RunResult{OK: false, Error: `connect: password "` + secret + `" rejected; as JSON: {"dsn":"` +
		strings.NewReplacer(`"`, `\"`, `\`, `\\`).Replace(secret) + `"}`})
	a.notifying.Wait()
	posts := hook.Received()
	if len(posts) != 1 || !strings.Contains(posts[0], "rejected") {
		t.Fatalf("posts: %q", posts)
	}
	testenv.NoCanary(t, "the failure notification", posts[0])
}
