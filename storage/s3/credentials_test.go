package s3_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"remora.dev/remora/internal/testenv"
	"remora.dev/remora/storage"
	"remora.dev/remora/storage/s3"
)

// TestCredentialsFromEnvironment: keys come from AWS_ACCESS_KEY_ID and
// AWS_SECRET_ACCESS_KEY, else from the shared credentials file, and from the
// cloud identity (the node's, in a cluster without IRSA) only when the URL
// asks for it with credentials=cloud. A storage Secret whose keys are missing
// or empty, or only one of them, fails to open instead of turning silently
// into another identity; errors name the variables, never their values.
func TestCredentialsFromEnvironment(t *testing.T) {
	const id, secret = "AKIDTENANTA", "secret-" + testenv.Canary
	const unset = "<unset>"
	type env struct{ id, secret, file string } // file: "", "home", "named", "missing"
	for _, tc := range []struct {
		name    string
		env     env
		query   string
		source  string   // what the keys come from, when Open succeeds
		wantErr []string // substrings of Open's error
	}{
		{"both keys", env{id, secret, ""}, "", "keys", nil},
		{"both keys and a credentials file", env{id, secret, "home"}, "", "keys", nil},
		{"empty secret", env{id, "", ""}, "", "", []string{"AWS_SECRET_ACCESS_KEY", "empty"}},
		{"empty key ID", env{"", secret, ""}, "", "", []string{"AWS_ACCESS_KEY_ID", "empty"}},
		{"both empty", env{"", "", "home"}, "", "", []string{"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "empty"}},
		{"key ID alone", env{id, unset, "home"}, "", "", []string{"AWS_SECRET_ACCESS_KEY", "missing"}},
		{"secret alone", env{unset, secret, "home"}, "", "", []string{"AWS_ACCESS_KEY_ID", "missing"}},
		{"no keys, no file", env{unset, unset, ""}, "", "", []string{"no storage keys", "AWS_ACCESS_KEY_ID", "credentials=cloud"}},
		{"no keys, ~/.aws/credentials", env{unset, unset, "home"}, "", "file", nil},
		{"no keys, AWS_SHARED_CREDENTIALS_FILE", env{unset, unset, "named"}, "", "file", nil},
		{"no keys, AWS_SHARED_CREDENTIALS_FILE missing", env{unset, unset, "missing"}, "", "", []string{"AWS_SHARED_CREDENTIALS_FILE", "does not exist"}},
		{"cloud", env{unset, unset, "home"}, "?credentials=cloud", "cloud", nil},
		{"keys given", env{id, secret, ""}, "?credentials=keys", "keys", nil},
		{"cloud and keys", env{id, secret, ""}, "?credentials=cloud", "", []string{"credentials=cloud", "AWS_ACCESS_KEY_ID"}},
		{"cloud and empty keys", env{"", "", ""}, "?credentials=cloud", "", []string{"credentials=cloud", "AWS_ACCESS_KEY_ID"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			setCredentialsEnv(t, "AWS_ACCESS_KEY_ID", tc.env.id, unset)
			setCredentialsEnv(t, "AWS_SECRET_ACCESS_KEY", tc.env.secret, unset)
			setCredentialsEnv(t, "AWS_SESSION_TOKEN", unset, unset)
			credentialsFile(t, tc.env.file)
			st, err := storage.Open(context.Background(), "s3://bucket/p"+tc.query, storage.Options{})
			if tc.wantErr == nil {
				if err != nil {
					t.Fatalf("Open = %v", err)
				}
				if got := s3.CredentialSource(st); got != tc.source {
					t.Fatalf("keys from %q, want %q", got, tc.source)
				}
				return
			}
			if err == nil {
				t.Fatalf("Open succeeded with keys from %q, want an error holding %q", s3.CredentialSource(st), tc.wantErr)
			}
			for _, want := range tc.wantErr {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("Open = %v, want it to hold %q", err, want)
				}
			}
			if strings.Contains(err.Error(), testenv.Canary) || strings.Contains(err.Error(), id) {
				t.Errorf("error shows a key: %v", err)
			}
		})
	}
}

func TestCredentialsOption(t *testing.T) {
	for _, q := range []string{"credentials=", "credentials=node", "credentials=CLOUD"} {
		_, err := storage.Open(context.Background(), "s3://bucket/p?"+q, storage.Options{})
		if !errors.Is(err, storage.ErrBadURL) || !strings.Contains(err.Error(), "keys or cloud") {
			t.Errorf("Open(?%s) = %v, want ErrBadURL naming keys and cloud", q, err)
		}
	}
}

// setCredentialsEnv sets the variable for the test, or removes it when v is
// unset.
func setCredentialsEnv(t *testing.T, k, v, unset string) {
	if v != unset {
		t.Setenv(k, v)
		return
	}
	t.Setenv(k, "") // restores the old value when the test ends
	os.Unsetenv(k)
}

// credentialsFile gives the test a home directory, with a shared credentials
// file in ~/.aws ("home"), one named by AWS_SHARED_CREDENTIALS_FILE
// ("named"), that variable naming a missing file ("missing"), or none ("").
func credentialsFile(t *testing.T, where string) {
	home := t.TempDir()
	t.Setenv("HOME", home)
	t.Setenv("AWS_SHARED_CREDENTIALS_FILE", "")
	os.Unsetenv("AWS_SHARED_CREDENTIALS_FILE")
	t.Setenv("AWS_CONFIG_FILE", filepath.Join(home, "no-config"))
	content := []byte("[default]\naws_access_key_id = AKIDFILE\naws_secret_access_key = " + testenv.Canary + "\n")
	switch where {
	case "home":
		if err := os.MkdirAll(filepath.Join(home, ".aws"), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(home, ".aws", "credentials"), content, 0o600); err != nil {
			t.Fatal(err)
		}
	case "named":
		f := filepath.Join(home, "creds")
		if err := os.WriteFile(f, content, 0o600); err != nil {
			t.Fatal(err)
		}
		t.Setenv("AWS_SHARED_CREDENTIALS_FILE", f)
	case "missing":
		t.Setenv("AWS_SHARED_CREDENTIALS_FILE", filepath.Join(home, "nonexistent"))
	}
}
