package s3_test

import (
	"context"
	"encoding/pem"
	"errors"
	"fmt"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"remora.dev/remora/internal/testenv"
	"remora.dev/remora/storage"
	"remora.dev/remora/storage/s3"
	"remora.dev/remora/storage/storagetest"
)

func TestS3(t *testing.T) {
	srv := testenv.StartS3(t)
	srv.SetEnv(t)
	var n atomic.Int32
	storagetest.Run(t, func(t *testing.T) storage.Storage {
		bucket := fmt.Sprintf("bucket%d", n.Add(1))
		srv.MakeBucket(t, bucket)
		// part-size 5MiB makes the suite's larger objects multipart.
		s, err := storage.Open(context.Background(), srv.URL(bucket, "some/prefix")+"&part-size=5MiB", storage.Options{})
		if err != nil {
			t.Fatal(err)
		}
		return s
	})
}

func TestOpenBadURLs(t *testing.T) {
	notPEM := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(notPEM, []byte("no certificate here"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, u := range []string{
		"s3://", "s3://B_ad/prefix", "s3://bucket/p?unknown=1", "s3://bucket/p?insecure=maybe", "s3://bucket/p?path-style=maybe",
		"s3://bucket/p?part-size=1MiB", "s3://bucket/p?part-size=6GiB", "s3://bucket/p?part-size=lots", "s3://bucket/a/../b",
		"s3://bucket/p?endpoint=http://", "s3://bucket/p?endpoint=host/path", "s3://bucket/p?timeout=10ms", "s3://bucket/p?timeout=x",
		"s3://bucket/p?retries=21", "s3://bucket/p?retries=-1", "s3://bucket/p?ca-file=/nonexistent/ca.pem",
		"s3://bucket/p?ca-file=" + notPEM,
	} {
		_, err := storage.Open(context.Background(), u, storage.Options{})
		if !errors.Is(err, storage.ErrBadURL) {
			t.Errorf("Open(%q) = %v, want ErrBadURL", u, err)
		}
	}
}

func TestOpenOptions(t *testing.T) {
	t.Setenv("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE")
	t.Setenv("AWS_SECRET_ACCESS_KEY", testenv.Canary)
	tlsSrv := httptest.NewTLSServer(nil) // for a certificate to trust
	tlsSrv.Close()
	ca := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(ca, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: tlsSrv.Certificate().Raw}), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, u := range []string{
		"s3://bucket", "s3://bucket/a/b/",
		"s3://bucket/p?endpoint=host:9000&region=eu&insecure=true&path-style=false",
		"s3://bucket/p?endpoint=https://host/&path-style=true&ca-file=" + ca,
		"s3://bucket/p?part-size=5MiB", "s3://bucket/p?part-size=16MiB", "s3://bucket/p?part-size=8388608",
		"s3://bucket/p?part-size=16MB", "s3://bucket/p?part-size=1GiB", "s3://bucket/p?part-size=5GiB",
		"s3://bucket/p?timeout=100ms&retries=0", "s3://bucket/p?timeout=1h&retries=20",
	} {
		if _, err := storage.Open(context.Background(), u, storage.Options{}); err != nil {
			t.Errorf("Open(%q) = %v", u, err)
		}
	}
}

func TestString(t *testing.T) {
	t.Setenv("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE")
	t.Setenv("AWS_SECRET_ACCESS_KEY", testenv.Canary)
	for u, want := range map[string]string{
		"s3://bucket/p?region=eu":                            "s3://bucket/p",
		"s3://bucket/p?endpoint=http://minio:9000&retries=1": "s3://bucket/p at minio:9000",
	} {
		s, err := storage.Open(context.Background(), u, storage.Options{})
		if err != nil {
			t.Fatal(err)
		}
		if got := s.String(); got != want {
			t.Errorf("Open(%q).String() = %q, want %q", u, got, want)
		}
	}
}

func TestCheckErrors(t *testing.T) {
	srv := testenv.StartS3(t)
	ctx := context.Background()
	srv.MakeBucket(t, "exists")

	t.Run("missing bucket", func(t *testing.T) {
		srv.SetEnv(t)
		s, _ := storage.Open(ctx, srv.URL("missing", "p"), storage.Options{})
		err := s.Check(ctx)
		if err == nil || !strings.Contains(err.Error(), `bucket "missing" does not exist`) {
			t.Fatalf("Check = %v", err)
		}
	})
	t.Run("wrong secret", func(t *testing.T) {
		t.Setenv("AWS_ACCESS_KEY_ID", srv.AccessKey)
		t.Setenv("AWS_SECRET_ACCESS_KEY", "wrong-"+testenv.Canary)
		s, _ := storage.Open(ctx, srv.URL("exists", "p"), storage.Options{})
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
		t.Cleanup(s3.SetBackoffUnit(time.Millisecond))
		port := testenv.FreePort(t)
		s, _ := storage.Open(ctx, fmt.Sprintf("s3://exists/p?endpoint=127.0.0.1:%d&insecure=true&region=us-east-1", port), storage.Options{})
		err := s.Check(ctx)
		if err == nil || !strings.Contains(err.Error(), "cannot reach") || !strings.Contains(err.Error(), "(6 attempts)") {
			t.Fatalf("Check = %v", err)
		}
	})
}

// TestSweep: unfinished multipart uploads below the prefix are aborted once
// they are old enough; those elsewhere in the bucket stay.
func TestSweep(t *testing.T) {
	srv := testenv.StartS3(t)
	srv.SetEnv(t)
	srv.MakeBucket(t, "sweep")
	ctx := context.Background()
	st, err := storage.Open(ctx, srv.URL("sweep", "p"), storage.Options{})
	if err != nil {
		t.Fatal(err)
	}
	srv.StartUpload(t, "sweep", "p/a/object")
	srv.StartUpload(t, "sweep", "other/object")
	sw := st.(storage.Sweeper)
	if n, err := sw.Sweep(ctx, "a/", time.Now().Add(-time.Hour)); err != nil || n != 0 {
		t.Fatalf("Sweep of a fresh upload: %d, %v", n, err)
	}
	if n, err := sw.Sweep(ctx, "", time.Now().Add(time.Hour)); err != nil || n != 1 {
		t.Fatalf("Sweep of an old upload: %d, %v", n, err)
	}
	if n, err := sw.Sweep(ctx, "", time.Now().Add(time.Hour)); err != nil || n != 0 {
		t.Fatalf("second Sweep: %d, %v", n, err)
	}
}

// TestCheckLimitedKeys: keys that a policy limits to a part of the bucket (a
// namespace's prefix) pass the check, which S3 denies them as a bucket-wide
// request, and still reach their part; a wrong secret for them still fails.
func TestCheckLimitedKeys(t *testing.T) {
	srv := testenv.StartS3WithUsers(t)
	srv.MakeBucket(t, "limited")
	u := srv.CreateUser(t, "tenant-a")
	srv.SetBucketPolicy(t, "limited", `{"Version": "2012-10-17", "Statement": [
		{"Effect": "Allow", "Principal": {"AWS": ["tenant-a"]}, "Action": "s3:ListBucket", "Resource": "arn:aws:s3:::limited",
		 "Condition": {"StringLike": {"s3:prefix": ["p/a/", "p/a/*"]}}},
		{"Effect": "Allow", "Principal": {"AWS": ["tenant-a"]}, "Action": ["s3:GetObject", "s3:PutObject"], "Resource": "arn:aws:s3:::limited/p/a/*"}]}`)
	ctx := context.Background()
	for _, tc := range []struct {
		name, secret, want string
	}{
		{"limited keys", u.SecretKey, ""},
		{"wrong secret", "wrong-" + testenv.Canary, "access denied"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Setenv("AWS_ACCESS_KEY_ID", u.AccessKey)
			t.Setenv("AWS_SECRET_ACCESS_KEY", tc.secret)
			s, err := storage.Open(ctx, srv.URL("limited", "p"), storage.Options{})
			if err != nil {
				t.Fatal(err)
			}
			err = s.Check(ctx)
			if tc.want == "" {
				if err != nil {
					t.Fatalf("Check = %v", err)
				}
				if _, err := s.Put(ctx, "a/x", strings.NewReader("x")); err != nil {
					t.Fatalf("Put in the keys' part: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) || strings.Contains(err.Error(), testenv.Canary) {
				t.Fatalf("Check = %v, want %q without the secret", err, tc.want)
			}
		})
	}
}
