package storage_test

import (
	"context"
	"errors"
	"net/url"
	"strings"
	"testing"

	"remora.dev/remora/storage"
	_ "remora.dev/remora/storage/file"
	_ "remora.dev/remora/storage/s3"
)

func TestOpenBadURLs(t *testing.T) {
	for _, u := range []string{
		"", "backups", "/backups", "nosuchscheme://x/y", "s3://user:pw@bucket/p", "file://user:pw@/backups", "s3://user@bucket/p",
	} {
		_, err := storage.Open(context.Background(), u, storage.Options{})
		if !errors.Is(err, storage.ErrBadURL) {
			t.Errorf("Open(%q) = %v, want ErrBadURL", u, err)
			continue
		}
		if strings.Contains(err.Error(), "pw@") {
			t.Errorf("Open(%q) error shows the credentials: %v", u, err)
		}
	}
}

func TestUnknownSchemeListsRegistered(t *testing.T) {
	_, err := storage.Open(context.Background(), "nosuchscheme://x/y", storage.Options{})
	if err == nil || !strings.Contains(err.Error(), `unknown scheme "nosuchscheme"`) ||
		!strings.Contains(err.Error(), "file://") || !strings.Contains(err.Error(), "s3://") {
		t.Fatalf("Open of an unknown scheme: %v, want the registered schemes listed", err)
	}
}

func TestRegister(t *testing.T) {
	var got *url.URL
	storage.Register("registertest", func(_ context.Context, u *url.URL, _ storage.Options) (storage.Storage, error) {
		got = u
		return nil, errors.New("opened")
	})
	if _, err := storage.Open(context.Background(), "registertest://host/p?x=1", storage.Options{}); err == nil || err.Error() != "opened" {
		t.Fatalf("Open did not reach the registered backend: %v", err)
	}
	if got == nil || got.Host != "host" || got.Path != "/p" || got.RawQuery != "x=1" {
		t.Fatalf("the backend got URL %v", got)
	}
	defer func() {
		if recover() == nil {
			t.Fatal("registering a scheme twice did not panic")
		}
	}()
	storage.Register("file", nil)
}

// TestAcceptUser: a scheme that accepts a user gets the URL's user name; a
// password is refused for it, and a user name for the others.
func TestAcceptUser(t *testing.T) {
	var got *url.URL
	storage.Register("usernamedtest", func(_ context.Context, u *url.URL, _ storage.Options) (storage.Storage, error) {
		got = u
		return nil, errors.New("opened")
	})
	storage.AcceptUser("usernamedtest")
	if _, err := storage.Open(context.Background(), "usernamedtest://alice@host/p", storage.Options{}); err == nil || err.Error() != "opened" {
		t.Fatalf("Open: %v", err)
	}
	if got == nil || got.User.Username() != "alice" {
		t.Fatalf("the backend got URL %v", got)
	}
	for _, u := range []string{"usernamedtest://alice:pw@host/p", "s3://alice@bucket/p", "file://alice@/backups"} {
		_, err := storage.Open(context.Background(), u, storage.Options{})
		if !errors.Is(err, storage.ErrBadURL) || strings.Contains(err.Error(), "pw@") {
			t.Errorf("Open(%q) = %v, want ErrBadURL without the password", u, err)
		}
	}
}

func TestCheckKey(t *testing.T) {
	for _, k := range []string{"a", "a/b", "a.b/.c", "a/b..c"} {
		if err := storage.CheckKey(k); err != nil {
			t.Errorf("CheckKey(%q) = %v", k, err)
		}
	}
	for _, k := range []string{"", "/a", "a/", "a//b", ".", "..", "a/./b", "a/../b"} {
		if storage.CheckKey(k) == nil {
			t.Errorf("CheckKey(%q) accepted it", k)
		}
	}
}

func TestRedactURL(t *testing.T) {
	for in, want := range map[string]string{
		"s3://bucket/p":           "s3://bucket/p",
		"s3://key:secret@bucket/": "s3://xxxxx@bucket/",
		"key:secret@host":         "xxxxx@host",
		"s3://a@b@c/p":            "s3://xxxxx@c/p",
	} {
		if got := storage.RedactURL(in); got != want {
			t.Errorf("RedactURL(%q) = %q, want %q", in, got, want)
		}
	}
}
