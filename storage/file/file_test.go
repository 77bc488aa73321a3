package file_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"remora.dev/remora/storage"
	"remora.dev/remora/storage/file"
	"remora.dev/remora/storage/storagetest"
)

func TestFile(t *testing.T) {
	storagetest.Run(t, func(t *testing.T) storage.Storage {
		s, err := storage.Open(context.Background(), "file://"+t.TempDir(), storage.Options{})
		if err != nil {
			t.Fatal(err)
		}
		return s
	})
}

func TestLeavesNoTemporaryFiles(t *testing.T) {
	dir := t.TempDir()
	s := file.New(dir)
	if _, err := s.Put(context.Background(), "a/b", strings.NewReader("x")); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Put(context.Background(), "a/c", errReader{}); err == nil {
		t.Fatal("want error")
	}
	ents, _ := os.ReadDir(filepath.Join(dir, "a"))
	if len(ents) != 1 || ents[0].Name() != "b" {
		t.Fatalf("directory holds %v", ents)
	}
}

type errReader struct{}

func (errReader) Read([]byte) (int, error) { return 0, errors.New("read failed") }

func TestSweep(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	s := file.New(dir)
	if _, err := s.Put(ctx, "a/kept", strings.NewReader("x")); err != nil {
		t.Fatal(err)
	}
	leftover := filepath.Join(dir, "a", ".x.remora-tmp-abc") // as a killed Put leaves it
	if err := os.WriteFile(leftover, []byte("partial"), 0o644); err != nil {
		t.Fatal(err)
	}
	if n, err := s.Sweep(ctx, "a/", time.Now().Add(-time.Hour)); err != nil || n != 0 {
		t.Fatalf("Sweep of fresh leftovers: %d, %v", n, err)
	}
	if n, err := s.Sweep(ctx, "a/", time.Now().Add(time.Hour)); err != nil || n != 1 {
		t.Fatalf("Sweep of old leftovers: %d, %v", n, err)
	}
	if _, err := os.Stat(leftover); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("the leftover is still there: %v", err)
	}
	if _, err := s.Stat(ctx, "a/kept"); err != nil {
		t.Fatalf("Sweep removed an object: %v", err)
	}
}

func TestOpenBadURLs(t *testing.T) {
	for _, u := range []string{"file://relative/path", "file:///x?opt=1", "file:", "file://host/backups"} {
		if _, err := storage.Open(context.Background(), u, storage.Options{}); !errors.Is(err, storage.ErrBadURL) {
			t.Errorf("Open(%q) = %v, want ErrBadURL", u, err)
		}
	}
	for _, u := range []string{"file:///backups", "file://localhost/backups"} {
		if _, err := storage.Open(context.Background(), u, storage.Options{}); err != nil {
			t.Errorf("Open(%q) = %v", u, err)
		}
	}
}

func TestCheckMissingDirectory(t *testing.T) {
	ctx := context.Background()
	s, err := storage.Open(ctx, "file:///nonexistent/remora/dir", storage.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Check(ctx); err == nil || !strings.Contains(err.Error(), "does not exist") {
		t.Fatalf("Check = %v", err)
	}
}
