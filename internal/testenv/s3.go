package testenv

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"
)

// S3 is a running S3-compatible server.
type S3 struct {
	Endpoint  string // host:port
	AccessKey string
	SecretKey string
	Region    string
	Dir       string // the backend's root: buckets are directories here
	bin       string
	p         *proc
}

// StartS3 starts versitygw with its posix backend in a temp dir. The binary
// is found through REMORA_VERSITYGW, bin/versitygw or PATH.
func StartS3(t testing.TB) *S3 { t.Helper(); return startS3(t, "127.0.0.1", false) }

// StartS3Everywhere is StartS3 listening on every interface, for containers
// that reach the host through a bridge; Endpoint still names 127.0.0.1.
func StartS3Everywhere(t testing.TB) *S3 { t.Helper(); return startS3(t, "0.0.0.0", false) }

// StartS3WithUsers is StartS3 with versitygw's internal IAM: besides the
// root keys (AccessKey, SecretKey), CreateUser makes users, whose access
// bucket policies (SetBucketPolicy) grant.
func StartS3WithUsers(t testing.TB) *S3 { t.Helper(); return startS3(t, "127.0.0.1", true) }

func startS3(t testing.TB, host string, users bool) *S3 {
	t.Helper()
	bin := lookPath("REMORA_VERSITYGW", "versitygw")
	if bin == "" {
		Missing(t, "versitygw (the S3-compatible test server)", "run `make bin/versitygw` or set REMORA_VERSITYGW")
	}
	dir, err := os.MkdirTemp("", "rs3")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	data := filepath.Join(dir, "data")
	if err := os.Mkdir(data, 0o755); err != nil {
		t.Fatal(err)
	}
	var lastErr error
	for try := 0; try < 3; try++ {
		port := FreePort(t)
		s := &S3{Endpoint: fmt.Sprintf("127.0.0.1:%d", port), AccessKey: "remora-test", SecretKey: Canary, Region: "us-east-1", Dir: data, bin: bin}
		args := []string{"--port", fmt.Sprintf("%s:%d", host, port), "--access", s.AccessKey, "--secret", s.SecretKey,
			"--region", s.Region, "--health", "/health", "--quiet"}
		if users {
			iam := filepath.Join(dir, fmt.Sprintf("iam-%d", try))
			if err := os.Mkdir(iam, 0o700); err != nil {
				t.Fatal(err)
			}
			args = append(args, "--iam-dir", iam)
		}
		cmd := exec.Command(bin, append(args, "posix", data)...)
		cmd.Env = append(os.Environ(), "ROOT_ACCESS_KEY_ID=", "ROOT_SECRET_ACCESS_KEY=")
		s.p = start(t, cmd, filepath.Join(dir, fmt.Sprintf("versitygw-%d.log", try)))
		lastErr = s.p.waitReady(func() error {
			resp, err := http.Get("http://" + s.Endpoint + "/health")
			if err != nil {
				return err
			}
			resp.Body.Close()
			if resp.StatusCode != 200 {
				return fmt.Errorf("health: %s", resp.Status)
			}
			return nil
		})
		if lastErr == nil {
			t.Cleanup(func() { s.p.stop(syscall.SIGTERM) })
			return s
		}
		s.p.stop(syscall.SIGKILL)
	}
	t.Fatalf("versitygw: %v", lastErr)
	return nil
}

// Client is a minio-go client for the server, for test setup and checks.
func (s *S3) Client(t testing.TB) *minio.Client {
	t.Helper()
	c, err := minio.New(s.Endpoint, &minio.Options{
		Creds: credentials.NewStaticV4(s.AccessKey, s.SecretKey, ""), Region: s.Region, BucketLookup: minio.BucketLookupPath,
	})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// MakeBucket creates a bucket.
func (s *S3) MakeBucket(t testing.TB, name string) {
	t.Helper()
	if err := s.Client(t).MakeBucket(context.Background(), name, minio.MakeBucketOptions{Region: s.Region}); err != nil {
		t.Fatalf("make bucket %s: %v", name, err)
	}
}

// URL is the Remora storage URL for bucket/prefix on this server.
func (s *S3) URL(bucket, prefix string) string {
	return fmt.Sprintf("s3://%s/%s?endpoint=%s&region=%s&insecure=true", bucket, prefix, s.Endpoint, s.Region)
}

// Env is the environment that gives Remora this server's keys.
func (s *S3) Env() []string {
	return []string{"AWS_ACCESS_KEY_ID=" + s.AccessKey, "AWS_SECRET_ACCESS_KEY=" + s.SecretKey}
}

// SetEnv sets the keys in this process's environment for the test's duration.
func (s *S3) SetEnv(t *testing.T) {
	t.Setenv("AWS_ACCESS_KEY_ID", s.AccessKey)
	t.Setenv("AWS_SECRET_ACCESS_KEY", s.SecretKey)
}

// S3User is an account made by CreateUser.
type S3User struct {
	AccessKey, SecretKey string
}

// Env is the environment that gives Remora the user's keys.
func (u S3User) Env() []string {
	return []string{"AWS_ACCESS_KEY_ID=" + u.AccessKey, "AWS_SECRET_ACCESS_KEY=" + u.SecretKey}
}

// CreateUser makes a user account, with versitygw's admin API, on a server
// started by StartS3WithUsers. The account has no access to anything until a
// bucket policy grants it; its secret holds the canary.
func (s *S3) CreateUser(t testing.TB, accessKey string) S3User {
	t.Helper()
	u := S3User{AccessKey: accessKey, SecretKey: accessKey + "-" + Canary}
	cmd := exec.Command(s.bin, "admin", "--access", s.AccessKey, "--secret", s.SecretKey, "--region", s.Region,
		"--endpoint-url", "http://"+s.Endpoint, "create-user", "--access", u.AccessKey, "--secret", u.SecretKey, "--role", "user")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("create user %s: %v\n%s", accessKey, err, out)
	}
	return u
}

// SetBucketPolicy sets the bucket's policy (a JSON bucket policy document).
func (s *S3) SetBucketPolicy(t testing.TB, bucket, policy string) {
	t.Helper()
	if err := s.Client(t).SetBucketPolicy(context.Background(), bucket, policy); err != nil {
		t.Fatalf("set the policy of bucket %s: %v", bucket, err)
	}
}

// Kill stops the server at once (SIGKILL), as a crash would.
func (s *S3) Kill() { s.p.stop(syscall.SIGKILL) }

// StartUpload starts a multipart upload of key in bucket, stores one part and
// leaves it unfinished, as a Put that was killed does.
func (s *S3) StartUpload(t testing.TB, bucket, key string) {
	t.Helper()
	ctx := context.Background()
	core := &minio.Core{Client: s.Client(t)}
	id, err := core.NewMultipartUpload(ctx, bucket, key, minio.PutObjectOptions{})
	if err != nil {
		t.Fatalf("start upload of %s/%s: %v", bucket, key, err)
	}
	const size = 5 << 20 // the smallest part S3 takes before the last
	if _, err := core.PutObjectPart(ctx, bucket, key, id, 1, bytes.NewReader(make([]byte, size)), size, minio.PutObjectPartOptions{}); err != nil {
		t.Fatalf("upload a part of %s/%s: %v", bucket, key, err)
	}
}
