package sftp_test

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"

	"remora.dev/remora/internal/testenv"
	"remora.dev/remora/storage"
)

// TestBadInput: every wrong setting fails with one line that names the
// storage and says what is wrong, shows no credential, and stores nothing.
func TestBadInput(t *testing.T) {
	srv := testenv.StartSFTP(t)
	otherKey, otherPub := testenv.SFTPKey(t)
	_, strangerPub := testenv.SFTPKey(t)
	knownHostsFile := func(line string) string {
		p := filepath.Join(t.TempDir(), "known_hosts")
		if err := os.WriteFile(p, []byte(line+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	ok := mkdir(t, srv, "ok")
	readOnly := filepath.Join(srv.Home, "readonly") // root's: the user may not write there
	if err := os.Mkdir(readOnly, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		env  map[string]string // on top of srv.SetEnv; "" unsets
		url  string
		want string // in Open's error if openFails, else in Put's
		open bool   // Open itself fails
	}{
		{name: "wrong password", env: map[string]string{"REMORA_SFTP_PASSWORD": "wrong-" + testenv.Canary}, url: srv.URL(ok),
			want: "login as " + srv.User + " refused: check REMORA_SFTP_PASSWORD"},
		{name: "wrong key", env: map[string]string{"REMORA_SFTP_PASSWORD": "", "REMORA_SFTP_KEY": string(otherKey)}, url: srv.URL(ok),
			want: "login as " + srv.User + " refused: check the key in REMORA_SFTP_KEY"},
		{name: "unknown host key", env: map[string]string{"REMORA_SFTP_KNOWN_HOSTS_FILE": knownHostsFile(knownhosts.Line([]string{"127.0.0.1:1"}, srv.HostKey))},
			url: srv.URL(ok), want: "host " + srv.Addr + " is not in the known hosts"},
		{name: "changed host key", env: map[string]string{"REMORA_SFTP_KNOWN_HOSTS_FILE": knownHostsFile(knownhosts.Line([]string{srv.Addr}, strangerPub))},
			url: srv.URL(ok), want: "the host key of " + srv.Addr + " has CHANGED"},
		{name: "changed host key, lines in the variable", env: map[string]string{"REMORA_SFTP_KNOWN_HOSTS_FILE": "", "REMORA_SFTP_KNOWN_HOSTS": knownhosts.Line([]string{srv.Addr}, otherPub)},
			url: srv.URL(ok), want: "has CHANGED"},
		{name: "missing directory", url: srv.URL(srv.Home + "/missing"), want: "directory " + srv.Home + "/missing does not exist"},
		{name: "no permission", url: srv.URL(readOnly), want: "permission denied: " + srv.User + " may not"},
		{name: "nothing listening", url: fmt.Sprintf("sftp://%s@127.0.0.1:%d%s", srv.User, testenv.FreePort(t), ok), want: "cannot reach 127.0.0.1:"},
		{name: "no credentials", env: map[string]string{"REMORA_SFTP_PASSWORD": ""}, url: srv.URL(ok), open: true, want: "no SFTP credentials: set REMORA_SFTP_PASSWORD"},
		{name: "empty password", env: map[string]string{"REMORA_SFTP_PASSWORD": "-"}, url: srv.URL(ok), open: true, want: "REMORA_SFTP_PASSWORD is empty"},
		{name: "no known hosts", env: map[string]string{"REMORA_SFTP_KNOWN_HOSTS_FILE": "", "HOME": t.TempDir()}, url: srv.URL(ok), open: true, want: "no known host keys"},
		{name: "password in the URL", url: strings.Replace(srv.URL(ok), "@", ":"+testenv.Canary+"@", 1), open: true, want: "credentials do not belong in the URL"},
		{name: "password_env unset", url: srv.URL(ok) + "?password_env=NOPE_NOT_SET", open: true, want: "password_env=NOPE_NOT_SET names a variable that is not set"},
		{name: "unknown option", url: srv.URL(ok) + "?insecure=true", open: true, want: `unknown option "insecure"`},
		{name: "no user", url: "sftp://" + srv.Addr + ok, open: true, want: "name the login user"},
		{name: "encrypted key", env: map[string]string{"REMORA_SFTP_PASSWORD": "", "REMORA_SFTP_KEY": encryptedKey(t)}, url: srv.URL(ok), open: true, want: "is encrypted"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv.SetEnv(t)
			for k, v := range tc.env {
				t.Setenv(k, v)
				switch v {
				case "":
					os.Unsetenv(k)
				case "-":
					os.Setenv(k, "")
				}
			}
			err := openAndPut(tc.url)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v\nwant an error holding %q", err, tc.want)
			}
			if tc.open != strings.HasPrefix(err.Error(), "open:") {
				t.Errorf("failed at the wrong step: %v", err)
			}
			msg := err.Error()
			if strings.Contains(msg, "\n") || strings.Contains(msg, testenv.Canary) || strings.Contains(msg, "PRIVATE KEY") {
				t.Errorf("error is not one clean line: %q", msg)
			}
			if !tc.open && !strings.Contains(msg, "storage sftp://"+srv.User+"@") {
				t.Errorf("error does not name the storage: %v", msg)
			}
			for _, dir := range []string{ok, readOnly} {
				if ents, _ := os.ReadDir(dir); len(ents) != 0 {
					t.Errorf("%s holds %d entries after a failed Put", dir, len(ents))
				}
			}
		})
	}
}

// openAndPut opens the storage and puts one small object.
func openAndPut(u string) error {
	ctx := context.Background()
	s, err := storage.Open(ctx, u, storage.Options{})
	if err != nil {
		return fmt.Errorf("open: %w", err)
	}
	_, err = s.Put(ctx, "a/key", strings.NewReader("data"))
	return err
}

// encryptedKey is an ed25519 key protected by a passphrase.
func encryptedKey(t *testing.T) string {
	_, priv, _ := ed25519.GenerateKey(rand.Reader)
	block, err := ssh.MarshalPrivateKeyWithPassphrase(priv, "", []byte("passphrase"))
	if err != nil {
		t.Fatal(err)
	}
	return string(pem.EncodeToMemory(block))
}
