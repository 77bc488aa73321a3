package redact

import (
	"bytes"
	"fmt"
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
