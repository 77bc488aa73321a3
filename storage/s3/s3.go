// Package s3 is the storage backend for s3:// URLs: objects in a bucket of
// AWS S3 or an S3-compatible server, below a prefix. Importing it registers
// the scheme with storage.Open. The URL names the bucket, then optionally a
// prefix and options (the README describes them):
//
//	s3://bucket/prefix?endpoint=host:port&region=R&insecure=true&path-style=true&ca-file=/ca.pem&part-size=16MiB&stall=60s&retries=5
//
// Keys come from AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, else from the
// shared credentials file; from the cloud identity only with credentials=cloud;
// never from the URL.
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
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"syscall"

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
	creds    string           // where the keys come from: fromKeys, fromFile or fromCloud
	xfer     storage.Transfer // stall= and retries=: a request that moves no data for Stall is retried, up to Retries times
	log      *slog.Logger
	clock    storage.DateClock
}

// open returns the storage an s3:// URL names. It contacts nothing: Check
// does.
func open(_ context.Context, u *url.URL, o storage.Options) (storage.Storage, error) {
	c, err := configure(u)
	if err != nil {
		return nil, err
	}
	s := c.s
	display := *u
	display.RawQuery = ""
	s.display = display.String()
	if s.endpoint != awsEndpoint {
		s.display += " at " + s.endpoint
	}
	if c.minio.Creds, s.creds, err = credentialsFromEnv(c.cloud); err != nil {
		return nil, fmt.Errorf("storage %s: %w", s, err)
	}
	tr, err := c.transport()
	if err != nil {
		return nil, err
	}
	c.minio.Transport = s.clock.RoundTripper(tr)
	c.minio.MaxRetries = 1 // retries are ours (retry.go): longer backoff, stall detection
	if s.core, err = minio.NewCore(s.endpoint, &c.minio); err != nil {
		return nil, badURL(u, "%v", err)
	}
	s.core.SetAppInfo("remora", version.Version())
	s.log = o.Logger
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	return s, nil
}

// Where a storage's keys come from.
const (
	fromKeys  = "keys"  // AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY
	fromFile  = "file"  // the shared credentials file
	fromCloud = "cloud" // the cloud identity, asked for with credentials=cloud
)

// credentialsFromEnv picks the keys: static ones from AWS_ACCESS_KEY_ID and
// AWS_SECRET_ACCESS_KEY, else the shared credentials file; the cloud identity
// (IRSA web identity, ECS/EKS pod identity, EC2 instance profile) only when
// the URL asks for it. Nothing falls back silently: in a pod, the storage
// Secret's keys arrive as these variables, and a Secret whose keys are
// missing or empty must fail, not turn into the node's identity, which may
// reach every tenant's backups. Errors name variables, never their values.
func credentialsFromEnv(cloud bool) (*credentials.Credentials, string, error) {
	id, idSet := os.LookupEnv("AWS_ACCESS_KEY_ID")
	secret, secretSet := os.LookupEnv("AWS_SECRET_ACCESS_KEY")
	switch {
	case cloud && (idSet || secretSet):
		return nil, "", errors.New("credentials=cloud asks for the cloud identity, but AWS_ACCESS_KEY_ID or AWS_SECRET_ACCESS_KEY is set too: remove them (from the storage Secret) or drop credentials=cloud from the storage URL")
	case cloud:
		return credentials.New(&credentials.IAM{}), fromCloud, nil
	case idSet || secretSet:
		if err := bothKeys(id, idSet, secret, secretSet); err != nil {
			return nil, "", err
		}
		return credentials.NewStaticV4(id, secret, os.Getenv("AWS_SESSION_TOKEN")), fromKeys, nil
	}
	if err := sharedCredentialsFile(); err != nil {
		return nil, "", err
	}
	return credentials.New(&credentials.FileAWSCredentials{}), fromFile, nil
}

// bothKeys checks that the key ID and the secret are both set and not
// empty: one without the other is a storage Secret gone wrong.
func bothKeys(id string, idSet bool, secret string, secretSet bool) error {
	var bad []string
	for _, v := range []struct {
		name, value string
		set         bool
	}{{"AWS_ACCESS_KEY_ID", id, idSet}, {"AWS_SECRET_ACCESS_KEY", secret, secretSet}} {
		switch {
		case !v.set:
			bad = append(bad, v.name+" is missing")
		case v.value == "":
			bad = append(bad, v.name+" is empty")
		}
	}
	if bad == nil {
		return nil
	}
	return fmt.Errorf("%s: set both AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (in a pod, in the storage Secret), or neither and add credentials=cloud to the storage URL to use the cloud identity", strings.Join(bad, " and "))
}

// sharedCredentialsFile checks that the shared credentials file exists:
// AWS_SHARED_CREDENTIALS_FILE, else ~/.aws/credentials.
func sharedCredentialsFile() error {
	if f := os.Getenv("AWS_SHARED_CREDENTIALS_FILE"); f != "" {
		if _, err := os.Stat(f); err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return fmt.Errorf("AWS_SHARED_CREDENTIALS_FILE names %s, which does not exist", f)
			}
			return fmt.Errorf("AWS_SHARED_CREDENTIALS_FILE: %w", err)
		}
		return nil
	}
	if home, err := os.UserHomeDir(); err == nil {
		if _, err := os.Stat(filepath.Join(home, ".aws", "credentials")); err == nil {
			return nil
		}
	}
	return errors.New("no storage keys: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (in a pod, in the storage Secret named by remora.dev/storage, default remora-storage), or write ~/.aws/credentials, or add credentials=cloud to the storage URL to use the cloud identity (IRSA, EKS/ECS pod identity, EC2 instance profile)")
}

func (s *Storage) String() string { return s.display }

// keysFrom names where the keys come from, for errors.
func (s *Storage) keysFrom() string {
	switch s.creds {
	case fromFile:
		return "the shared credentials file"
	case fromCloud:
		return "the pod's cloud identity (credentials=cloud)"
	}
	return "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY"
}

// Check reports whether the bucket exists and the credentials may use it.
func (s *Storage) Check(ctx context.Context) error {
	var ok bool
	err := s.retry(ctx, "check bucket", nil, func(ctx context.Context, _ io.Reader) (err error) {
		ok, err = s.core.BucketExists(ctx, s.bucket)
		return err
	})
	if isDenied(err) {
		ok, err = true, s.checkLimited(ctx)
	}
	if err != nil {
		return s.err("check bucket", "", err)
	}
	if !ok {
		return fmt.Errorf("storage %s: bucket %q does not exist: create it or fix the storage URL", s, s.bucket)
	}
	return nil
}

// checkLimited tells keys limited to a part of the bucket, such as one
// namespace's prefix (README: Tenants), from wrong keys, after the bucket
// check was denied. S3 grants that check (HEAD bucket) only to keys that may
// list the whole bucket, and its denial has no body to say why; a listing's
// denial has. AccessDenied there comes from a server that knows the keys (a
// wrong key ID or secret is InvalidAccessKeyId or SignatureDoesNotMatch), so
// the check passes, and a request beyond what the keys may reach fails when
// it is made, with the same access-denied error.
func (s *Storage) checkLimited(ctx context.Context) error {
	err := s.retry(ctx, "check bucket", nil, func(ctx context.Context, _ io.Reader) error {
		ctx, cancel := context.WithCancel(ctx)
		defer cancel()
		for o := range s.core.Client.ListObjects(ctx, s.bucket, minio.ListObjectsOptions{Prefix: s.prefix, MaxKeys: 1}) {
			return o.Err // the first page answered
		}
		return ctx.Err()
	})
	if isDenied(err) {
		s.log.Debug("the keys may not list the whole storage; checking what they reach as it is used", "storage", s.String())
		return nil
	}
	return err
}

// isDenied tells the answer of a server that knows the keys but does not
// grant the request.
func isDenied(err error) bool {
	var resp minio.ErrorResponse
	return errors.As(err, &resp) && resp.Code == "AccessDenied"
}

// err turns an S3 client error into one line that says what to fix.
func (s *Storage) err(op, key string, err error) error {
	what := op
	if key != "" {
		what += " " + key
	}
	tries := ""
	var re *storage.RetriedError
	if errors.As(err, &re) {
		tries = fmt.Sprintf(" (%d attempts)", re.N)
	}
	if errors.Is(err, errSlowPage) {
		return fmt.Errorf("storage %s: %s: a listing page did not arrive within %s%s: check the network, or raise stall= in the storage URL for a slow link", s, what, s.xfer.Stall, tries)
	}
	if errors.Is(err, errStalled) {
		return fmt.Errorf("storage %s: %s: no data moved for %s%s: check the network, or raise stall= in the storage URL for a slow link", s, what, s.xfer.Stall, tries)
	}
	var resp minio.ErrorResponse
	if errors.As(err, &resp) {
		switch resp.Code {
		case "AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch", "InvalidToken", "ExpiredToken":
			return fmt.Errorf("storage %s: %s: access denied (%s): check %s, and that its policy covers this bucket and prefix", s, what, resp.Code, s.keysFrom())
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
// connection fails or stalls part way, with range requests pinned to the
// object's ETag (storage.Download).
func (s *Storage) Open(ctx context.Context, key string) (io.ReadCloser, error) {
	if err := storage.CheckKey(key); err != nil {
		return nil, err
	}
	return storage.Download{
		Storage: s, Key: key, Transfer: s.xfer, Log: s.log,
		OpenAt:    s.openAt(s.prefix + key),
		Retryable: retryable, NotFound: isNotFound, RetryFirst: true, Backoff: backoff,
		Err: func(err error) error { return s.err("get", key, err) },
	}.Start(ctx)
}

// openAt asks for an object from off; a resumption only from the version
// (ETag) that answered first.
func (s *Storage) openAt(obj string) func(ctx context.Context, off int64, pin storage.Version) (io.ReadCloser, storage.Version, error) {
	return func(ctx context.Context, off int64, pin storage.Version) (io.ReadCloser, storage.Version, error) {
		opts := minio.GetObjectOptions{}
		if off > 0 {
			if err := opts.SetRange(off, 0); err != nil {
				return nil, storage.Version{}, err
			}
		}
		if pin.ID != "" {
			if err := opts.SetMatchETag(pin.ID); err != nil {
				return nil, storage.Version{}, err
			}
		}
		body, info, _, err := s.core.GetObject(ctx, s.bucket, obj, opts)
		var resp minio.ErrorResponse
		if errors.As(err, &resp) && resp.StatusCode == http.StatusPreconditionFailed {
			return nil, storage.Version{}, storage.ErrChanged
		}
		if err != nil {
			return nil, storage.Version{}, err
		}
		return body, storage.Version{ID: info.ETag, Size: info.Size}, nil
	}
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
