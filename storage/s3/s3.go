// Package s3 is the storage backend for s3:// URLs: objects in a bucket of
// AWS S3 or an S3-compatible server, below a prefix. Importing it registers
// the scheme with storage.Open. The URL names the bucket, then optionally a
// prefix and options (the README describes them):
//
//	s3://bucket/prefix?endpoint=host:port&region=R&insecure=true&path-style=true&ca-file=/ca.pem&part-size=16MiB&timeout=60s&retries=5
//
// Keys come from AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, else from the
// shared credentials file or the cloud identity; never from the URL.
//
// Requests that meet a transient fault (a dropped connection, a stall, a 5xx,
// 408 or 429 answer, S3's SlowDown-style codes) are retried with backoff; large
// objects go up in parts, a broken download resumes where it stopped, and a
// broken listing after its last key.
package s3

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/url"
	"os"
	"syscall"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"

	"remora.dev/remora/internal/errs"
	"remora.dev/remora/internal/version"
	"remora.dev/remora/storage"
)

func init() { storage.Register("s3", open) }

// S3 multipart limits (AWS documents them; S3-compatible servers follow).
const (
	minPartSize     = 5 << 20
	maxPartSize     = 5 << 30
	maxParts        = 10000
	defaultPartSize = 8 << 20
	// partsPerStep is how many parts are sent at one size before the size
	// doubles: 8 MiB parts cover the first 8 GiB, 16 MiB the next 16 GiB, and
	// so on, so objects of several TiB fit in 10,000 parts while small and
	// medium backups keep memory at two parts.
	partsPerStep = 1000
)

// awsEndpoint is where a URL without endpoint= goes.
const awsEndpoint = "s3.amazonaws.com"

// Storage keeps objects in an S3-compatible bucket below a prefix.
type Storage struct {
	core     *minio.Core
	bucket   string
	prefix   string // "" or ends in "/"
	endpoint string
	partSize int64
	display  string
	stall    time.Duration // a request that moves no data this long is retried
	retries  int           // attempts after the first, for transient faults
	log      *slog.Logger
}

// open returns the storage an s3:// URL names. It contacts nothing: Check
// does.
func open(_ context.Context, u *url.URL, o storage.Options) (storage.Storage, error) {
	c, err := configure(u)
	if err != nil {
		return nil, err
	}
	s := c.s
	if c.minio.Transport, err = c.transport(); err != nil {
		return nil, err
	}
	c.minio.Creds = credentialsFromEnv()
	c.minio.MaxRetries = 1 // retries are ours (retry.go): longer backoff, stall detection
	if s.core, err = minio.NewCore(s.endpoint, &c.minio); err != nil {
		return nil, badURL(u, "%v", err)
	}
	s.core.SetAppInfo("remora", version.Version())
	s.log = o.Logger
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	display := *u
	display.RawQuery = ""
	s.display = display.String()
	if s.endpoint != awsEndpoint {
		s.display += " at " + s.endpoint
	}
	return s, nil
}

// credentialsFromEnv uses static keys from AWS_ACCESS_KEY_ID and
// AWS_SECRET_ACCESS_KEY when both are set, else the ambient chain: the shared
// credentials file, then the cloud identity (IRSA web identity, ECS/EKS pod
// identity, EC2 instance profile).
func credentialsFromEnv() *credentials.Credentials {
	id, secret := os.Getenv("AWS_ACCESS_KEY_ID"), os.Getenv("AWS_SECRET_ACCESS_KEY")
	if id != "" && secret != "" {
		return credentials.NewStaticV4(id, secret, os.Getenv("AWS_SESSION_TOKEN"))
	}
	return credentials.NewChainCredentials([]credentials.Provider{
		&credentials.FileAWSCredentials{},
		&credentials.IAM{},
	})
}

func (s *Storage) String() string { return s.display }

// Check reports whether the bucket exists and the credentials may use it.
func (s *Storage) Check(ctx context.Context) error {
	var ok bool
	err := s.retry(ctx, "check bucket", nil, func(ctx context.Context, _ io.Reader) (err error) {
		ok, err = s.core.BucketExists(ctx, s.bucket)
		return err
	})
	if err != nil {
		return s.err("check bucket", "", err)
	}
	if !ok {
		return fmt.Errorf("storage %s: bucket %q does not exist: create it or fix the storage URL", s, s.bucket)
	}
	return nil
}

// err turns an S3 client error into one line that says what to fix.
func (s *Storage) err(op, key string, err error) error {
	what := op
	if key != "" {
		what += " " + key
	}
	tries := ""
	var re *retriedError
	if errors.As(err, &re) {
		tries = fmt.Sprintf(" (%d attempts)", re.n)
	}
	if errors.Is(err, errSlowPage) {
		return fmt.Errorf("storage %s: %s: a listing page did not arrive within %s%s: check the network, or raise timeout= in the storage URL for a slow link", s, what, s.stall, tries)
	}
	if errors.Is(err, errStalled) {
		return fmt.Errorf("storage %s: %s: no data moved for %s%s: check the network, or raise timeout= in the storage URL for a slow link", s, what, s.stall, tries)
	}
	var resp minio.ErrorResponse
	if errors.As(err, &resp) {
		switch resp.Code {
		case "AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch", "InvalidToken", "ExpiredToken":
			if os.Getenv("AWS_ACCESS_KEY_ID") == "" {
				return fmt.Errorf("storage %s: %s: access denied (%s) with no AWS_ACCESS_KEY_ID set: in a pod, the storage Secret named by remora.dev/storage (default remora-storage) may be missing; else check the pod's cloud identity", s, what, resp.Code)
			}
			return fmt.Errorf("storage %s: %s: access denied (%s): check AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or the pod's cloud identity", s, what, resp.Code)
		case "NoSuchBucket":
			return fmt.Errorf("storage %s: bucket %q does not exist: create it or fix the storage URL", s, s.bucket)
		case "AuthorizationHeaderMalformed", "InvalidRegion":
			return fmt.Errorf("storage %s: %s: wrong region: set region=... in the storage URL (%s)", s, what, resp.Message)
		}
		if resp.Code != "" {
			return fmt.Errorf("storage %s: %s: %s: %s%s", s, what, resp.Code, resp.Message, tries)
		}
	}
	var nerr net.Error
	if errors.As(err, &nerr) || errors.Is(err, syscall.ECONNREFUSED) {
		return fmt.Errorf("storage %s: %s: cannot reach %s%s: %v: check the endpoint and the network", s, what, s.endpoint, tries, errs.Root(err))
	}
	return fmt.Errorf("storage %s: %s: %w", s, what, err)
}

// Open returns the object's content, resuming where it broke if the
// connection fails part way.
func (s *Storage) Open(ctx context.Context, key string) (io.ReadCloser, error) {
	if err := storage.CheckKey(key); err != nil {
		return nil, err
	}
	r := &resuming{s: s, ctx: ctx, key: key, obj: s.prefix + key}
	err := s.retry(ctx, "get "+key, nil, func(_ context.Context, _ io.Reader) error {
		body, info, err := r.get(minio.GetObjectOptions{})
		if err != nil {
			return err
		}
		r.body, r.etag = body, info.ETag
		return nil
	})
	if err != nil {
		r.Close()
		if isNotFound(err) {
			return nil, storage.NotExist(key)
		}
		return nil, s.err("get", key, err)
	}
	return r, nil
}

func (s *Storage) Stat(ctx context.Context, key string) (storage.Object, error) {
	if err := storage.CheckKey(key); err != nil {
		return storage.Object{}, err
	}
	var info minio.ObjectInfo
	err := s.retry(ctx, "stat "+key, nil, func(ctx context.Context, _ io.Reader) (err error) {
		info, err = s.core.StatObject(ctx, s.bucket, s.prefix+key, minio.StatObjectOptions{})
		return err
	})
	if err != nil {
		if isNotFound(err) {
			return storage.Object{}, storage.NotExist(key)
		}
		return storage.Object{}, s.err("stat", key, err)
	}
	return storage.Object{Key: key, Size: info.Size, ModTime: info.LastModified.UTC()}, nil
}

func isNotFound(err error) bool {
	var resp minio.ErrorResponse
	return errors.As(err, &resp) && (resp.Code == "NoSuchKey" || resp.StatusCode == 404 && resp.Code != "NoSuchBucket")
}

func (s *Storage) Delete(ctx context.Context, key string) error {
	if err := storage.CheckKey(key); err != nil {
		return err
	}
	err := s.retry(ctx, "delete "+key, nil, func(ctx context.Context, _ io.Reader) error {
		return s.core.RemoveObject(ctx, s.bucket, s.prefix+key, minio.RemoveObjectOptions{})
	})
	if err != nil && !isNotFound(err) {
		return s.err("delete", key, err)
	}
	return nil
}
