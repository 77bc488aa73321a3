package redact

import (
	"bytes"
	"fmt"
	"log/slog"
	"strings"
	"testing"
)

func TestMasks(t *testing.T) {
	Add("s3cr3t/+pw", "ab") // the short one is ignored
	AddURLPassword("postgres://u:hunter2hunter@h/db")
	var b bytes.Buffer
	fmt.Fprintf(Writer(&b), "dsn postgres://u:s3cr3t%%2F%%2Bpw@h and hunter2hunter, ab stays")
	if got, want := b.String(), "dsn postgres://u:xxxxx@h and xxxxx, ab stays"; got != want {
		t.Errorf("got %q\nwant %q", got, want)
	}
	if got := String("plain s3cr3t/+pw"); got != "plain xxxxx" {
		t.Errorf("String: %q", got)
	}
}

// TestEscapedForms: a secret holding a quote or a backslash is escaped in a
// JSON log record (and by %q); it is masked there too.
func TestEscapedForms(t *testing.T) {
	secret := `Zq"Jv\Kx<Wy`
	Add(secret)
	var b strings.Builder
	log := slog.New(slog.NewJSONHandler(Writer(&b), nil))
	log.Error("connect failed", "error", "password "+secret+" refused")
	fmt.Fprintf(Writer(&b), "%q\n", secret)
	if strings.Contains(b.String(), "Zq") || strings.Contains(b.String(), "Wy") {
		t.Fatalf("the secret leaked in its escaped form:\n%s", b.String())
	}
}
