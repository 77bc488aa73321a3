package storage_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"remora.dev/remora/agent/storage"
	"remora.dev/remora/agent/storage/storagetest"
	"remora.dev/remora/internal/testenv"
)

func TestFile(t *testing.T) {
	storagetest.Run(t, func(t *testing.T) storage.Storage {
		s, err := storage.Open(context.Background(), "file://"+t.TempDir())
		if err != nil {
			t.Fatal(err)
		}
		return s
	})
}

func TestS3(t *testing.T) {
	srv := testenv.StartS3(t)
	srv.SetEnv(t)
	var n atomic.Int32
	storagetest.Run(t, func(t *testing.T) storage.Storage {
		bucket := fmt.Sprintf("bucket%d", n.Add(1))
		srv.MakeBucket(t, bucket)
		// part-size 5MiB makes the suite's larger objects multipart.
		s, err := storage.Open(context.Background(), srv.URL(bucket, "some/prefix")+"&part-size=5MiB")
		if err != nil {
			t.Fatal(err)
		}
		return s
	})
}

func TestFileLeavesNoTemporaryFiles(t *testing.T) {
	dir := t.TempDir()
	s := storage.NewFile(dir)
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

func TestOpenBadURLs(t *testing.T) {
	for _, u := range []string{
		"", "backups", "/backups", "ftp://x/y", "file://relative/path", "file:///x?opt=1",
		"s3://", "s3://B_ad/prefix", "s3://bucket/p?unknown=1", "s3://bucket/p?insecure=maybe",
		"s3://bucket/p?part-size=1MiB", "s3://user:pw@bucket/p", "s3://bucket/a/../b",
	} {
		_, err := storage.Open(context.Background(), u)
		if !errors.Is(err, storage.ErrBadURL) {
			t.Errorf("Open(%q) = %v, want ErrBadURL", u, err)
			continue
		}
		if strings.Contains(err.Error(), "pw@") {
			t.Errorf("Open(%q) error shows the credentials: %v", u, err)
		}
	}
}

func TestCheckErrors(t *testing.T) {
	srv := testenv.StartS3(t)
	ctx := context.Background()
	srv.MakeBucket(t, "exists")

	t.Run("missing directory", func(t *testing.T) {
		s, _ := storage.Open(ctx, "file:///nonexistent/remora/dir")
		err := s.Check(ctx)
		if err == nil || !strings.Contains(err.Error(), "does not exist") {
			t.Fatalf("Check = %v", err)
		}
	})
	t.Run("missing bucket", func(t *testing.T) {
		srv.SetEnv(t)
		s, _ := storage.Open(ctx, srv.URL("missing", "p"))
		err := s.Check(ctx)
		if err == nil || !strings.Contains(err.Error(), `bucket "missing" does not exist`) {
			t.Fatalf("Check = %v", err)
		}
	})
	t.Run("wrong secret", func(t *testing.T) {
		t.Setenv("AWS_ACCESS_KEY_ID", srv.AccessKey)
		t.Setenv("AWS_SECRET_ACCESS_KEY", "wrong-"+testenv.Canary)
		s, _ := storage.Open(ctx, srv.URL("exists", "p"))
		err := s.Check(ctx)
		if err == nil || !strings.Contains(err.Error(), "access denied") {
			t.Fatalf("Check = %v", err)
		}
		if strings.Contains(err.Error(), testenv.Canary) {
			t.Fatalf("error shows the secret: %v", err)
		}
	})
	t.Run("unreachable endpoint", func(t *testing.T) {
		srv.SetEnv(t)
		t.Cleanup(storage.SetBackoffUnit(time.Millisecond))
		port := testenv.FreePort(t)
		s, _ := storage.Open(ctx, fmt.Sprintf("s3://exists/p?endpoint=127.0.0.1:%d&insecure=true&region=us-east-1", port))
		err := s.Check(ctx)
		if err == nil || !strings.Contains(err.Error(), "cannot reach") || !strings.Contains(err.Error(), "(6 attempts)") {
			t.Fatalf("Check = %v", err)
		}
	})
}
