package storage

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"

	"remora.dev/remora/internal/version"
)

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

// S3 keeps objects in an S3-compatible bucket below a prefix.
type S3 struct {
	core     *minio.Core
	bucket   string
	prefix   string // "" or ends in "/"
	endpoint string
	partSize int64
	display  string
	stall    time.Duration // a request that moves no data this long is retried
	retries  int           // attempts after the first, for transient faults
}

var bucketRE = regexp.MustCompile(`^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$`)

const s3Example = "s3://bucket/prefix?endpoint=host:port&region=us-east-1&insecure=true"

func newS3FromURL(ctx context.Context, u *url.URL) (*S3, error) {
	bad := func(format string, a ...any) error {
		return fmt.Errorf("%w %q: %s (e.g. %s)", ErrBadURL, u.String(), fmt.Sprintf(format, a...), s3Example)
	}
	if !bucketRE.MatchString(u.Host) {
		return nil, bad("%q is not a valid bucket name", u.Host)
	}
	s := &S3{bucket: u.Host, endpoint: "s3.amazonaws.com", partSize: defaultPartSize, stall: defaultStall, retries: defaultRetries}
	if p := strings.Trim(u.Path, "/"); p != "" {
		if cleanKey(p) != nil {
			return nil, bad("invalid prefix %q", p)
		}
		s.prefix = p + "/"
	}
	opts := &minio.Options{Secure: true, BucketLookup: minio.BucketLookupAuto}
	var caFile string
	q := u.Query()
	for k, vs := range q {
		v := vs[len(vs)-1]
		switch k {
		case "endpoint":
			switch {
			case strings.HasPrefix(v, "http://"):
				opts.Secure = false
				v = strings.TrimPrefix(v, "http://")
			case strings.HasPrefix(v, "https://"):
				v = strings.TrimPrefix(v, "https://")
			}
			v = strings.TrimSuffix(v, "/")
			if v == "" || strings.ContainsAny(v, "/?#@") {
				return nil, bad("endpoint %q must be host or host:port", vs[0])
			}
			s.endpoint = v
		case "region":
			opts.Region = v
		case "insecure":
			b, err := strconv.ParseBool(v)
			if err != nil {
				return nil, bad("insecure=%q: want true or false", v)
			}
			opts.Secure = !b
		case "path-style":
			b, err := strconv.ParseBool(v)
			if err != nil {
				return nil, bad("path-style=%q: want true or false", v)
			}
			if b {
				opts.BucketLookup = minio.BucketLookupPath
			} else {
				opts.BucketLookup = minio.BucketLookupDNS
			}
		case "ca-file":
			caFile = v
		case "part-size":
			n, err := parseSize(v)
			if err != nil || n < minPartSize || n > maxPartSize {
				return nil, bad("part-size=%q: want a size from 5MiB to 5GiB, e.g. 16MiB", v)
			}
			s.partSize = n
		case "timeout":
			d, err := time.ParseDuration(v)
			if err != nil || d < 100*time.Millisecond || d > time.Hour {
				return nil, bad("timeout=%q: want a duration from 100ms to 1h, e.g. 60s", v)
			}
			s.stall = d
		case "retries":
			n, err := strconv.Atoi(v)
			if err != nil || n < 0 || n > 20 {
				return nil, bad("retries=%q: want 0 to 20", v)
			}
			s.retries = n
		default:
			return nil, bad("unknown option %q; known: endpoint, region, insecure, path-style, ca-file, part-size, timeout, retries", k)
		}
	}
	tr, err := minio.DefaultTransport(opts.Secure)
	if err != nil {
		return nil, err
	}
	if caFile != "" {
		pem, err := os.ReadFile(caFile)
		if err != nil {
			return nil, bad("ca-file: %v", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, bad("ca-file %s holds no PEM certificate", caFile)
		}
		tr.TLSClientConfig = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	}
	tr.ResponseHeaderTimeout = s.stall
	opts.Transport = tr
	opts.Creds = s3Credentials()
	opts.MaxRetries = 1 // retries are ours (retry.go): longer backoff, stall detection
	core, err := minio.NewCore(s.endpoint, opts)
	if err != nil {
		return nil, bad("%v", err)
	}
	core.SetAppInfo("remora", version.Version())
	s.core = core
	display := *u
	display.RawQuery = ""
	s.display = display.String()
	if s.endpoint != "s3.amazonaws.com" {
		s.display += " at " + s.endpoint
	}
	return s, nil
}

// s3Credentials uses static keys from AWS_ACCESS_KEY_ID and
// AWS_SECRET_ACCESS_KEY when both are set, else the ambient chain: the shared
// credentials file, then the cloud identity (IRSA web identity, ECS/EKS pod
// identity, EC2 instance profile).
func s3Credentials() *credentials.Credentials {
	id, secret := os.Getenv("AWS_ACCESS_KEY_ID"), os.Getenv("AWS_SECRET_ACCESS_KEY")
	if id != "" && secret != "" {
		return credentials.NewStaticV4(id, secret, os.Getenv("AWS_SESSION_TOKEN"))
	}
	return credentials.NewChainCredentials([]credentials.Provider{
		&credentials.FileAWSCredentials{},
		&credentials.IAM{},
	})
}

func (s *S3) String() string { return s.display }

// Check reports whether the bucket exists and the credentials may use it.
func (s *S3) Check(ctx context.Context) error {
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
func (s *S3) err(op, key string, err error) error {
	what := op
	if key != "" {
		what += " " + key
	}
	tries := ""
	var re *retriedError
	if errors.As(err, &re) {
		tries = fmt.Sprintf(" (%d attempts)", re.n)
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
		return fmt.Errorf("storage %s: %s: cannot reach %s%s: %v: check the endpoint and the network", s, what, s.endpoint, tries, rootCause(err))
	}
	return fmt.Errorf("storage %s: %s: %w", s, what, err)
}

func rootCause(err error) error {
	for {
		u := errors.Unwrap(err)
		if u == nil {
			return err
		}
		err = u
	}
}

func (s *S3) Put(ctx context.Context, key string, r io.Reader) (int64, error) {
	if err := cleanKey(key); err != nil {
		return 0, err
	}
	obj := s.prefix + key
	size := s.partSize
	buf := make([]byte, size)
	n, rerr := io.ReadFull(r, buf)
	if rerr != nil && rerr != io.ErrUnexpectedEOF && rerr != io.EOF {
		return 0, rerr
	}
	if rerr != nil { // the whole object fits in one part
		err := s.retry(ctx, "put "+key, buf[:n], func(ctx context.Context, body io.Reader) error {
			_, err := s.core.PutObject(ctx, s.bucket, obj, body, int64(n), "", "", minio.PutObjectOptions{})
			return err
		})
		if err != nil {
			return 0, s.err("put", key, err)
		}
		return int64(n), nil
	}
	return s.putMultipart(ctx, key, obj, buf, r)
}

type part struct {
	num int
	buf []byte
}

// putMultipart sends r in parts while the next part is read, so reading and
// uploading overlap and at most two parts are held in memory.
func (s *S3) putMultipart(ctx context.Context, key, obj string, first []byte, r io.Reader) (total int64, err error) {
	var uploadID string
	err = s.retry(ctx, "start upload "+key, nil, func(ctx context.Context, _ io.Reader) (err error) {
		uploadID, err = s.core.NewMultipartUpload(ctx, s.bucket, obj, minio.PutObjectOptions{})
		return err
	})
	if err != nil {
		return 0, s.err("put", key, err)
	}
	defer func() {
		if err != nil {
			actx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
			defer cancel()
			_ = s.retry(actx, "abort upload "+key, nil, func(ctx context.Context, _ io.Reader) error {
				return s.core.AbortMultipartUpload(ctx, s.bucket, obj, uploadID)
			})
		}
	}()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()

	toSend := make(chan part)
	free := make(chan []byte, 1)
	type result struct {
		parts []minio.CompletePart
		err   error
	}
	sent := make(chan result, 1)
	go func() {
		var res result
		for p := range toSend {
			attempts := 0
			if res.err == nil {
				var op minio.ObjectPart
				err := s.retry(ctx, fmt.Sprintf("put %s part %d", key, p.num), p.buf, func(ctx context.Context, body io.Reader) (err error) {
					attempts++
					op, err = s.core.PutObjectPart(ctx, s.bucket, obj, uploadID, p.num, body, int64(len(p.buf)), minio.PutObjectPartOptions{})
					return err
				})
				if err != nil {
					res.err = s.err("put", key, err)
					cancel()
				} else {
					res.parts = append(res.parts, minio.CompletePart{PartNumber: p.num, ETag: op.ETag})
				}
			}
			if attempts > 1 {
				continue // an abandoned attempt's transport may still read this buffer
			}
			select {
			case free <- p.buf[:cap(p.buf)]:
			default:
			}
		}
		sent <- res
	}()

	num := 1
	buf := first
	var readErr error
	for {
		total += int64(len(buf))
		select {
		case toSend <- part{num, buf}:
		case <-ctx.Done():
		}
		if ctx.Err() != nil {
			break
		}
		num++
		size := min(s.partSize<<((num-1)/partsPerStep), maxPartSize)
		select {
		case buf = <-free:
		default:
			buf = nil
		}
		if int64(cap(buf)) != size {
			buf = make([]byte, size)
		}
		buf = buf[:size]
		n, err := io.ReadFull(r, buf)
		if err == io.EOF {
			break
		}
		if err != nil && err != io.ErrUnexpectedEOF {
			readErr = err
			break
		}
		if num > maxParts {
			readErr = fmt.Errorf("storage %s: put %s: object exceeds %d parts; raise part-size in the storage URL", s, key, maxParts)
			break
		}
		buf = buf[:n]
		if err == io.ErrUnexpectedEOF {
			total += int64(n)
			select {
			case toSend <- part{num, buf}:
			case <-ctx.Done():
			}
			break
		}
	}
	close(toSend)
	res := <-sent
	switch {
	case readErr != nil:
		return 0, readErr
	case res.err != nil:
		return 0, res.err
	case ctx.Err() != nil:
		return 0, ctx.Err()
	}
	sort.Slice(res.parts, func(i, j int) bool { return res.parts[i].PartNumber < res.parts[j].PartNumber })
	err = s.retry(ctx, "complete upload "+key, nil, func(ctx context.Context, _ io.Reader) error {
		_, err := s.core.CompleteMultipartUpload(ctx, s.bucket, obj, uploadID, res.parts, minio.PutObjectOptions{})
		return err
	})
	if err != nil {
		return 0, s.err("put", key, err)
	}
	return total, nil
}

func (s *S3) Open(ctx context.Context, key string) (io.ReadCloser, error) {
	if err := cleanKey(key); err != nil {
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
		if isNotFound(err) {
			return nil, notExist(key)
		}
		return nil, s.err("get", key, err)
	}
	return r, nil
}

func (s *S3) Stat(ctx context.Context, key string) (Object, error) {
	if err := cleanKey(key); err != nil {
		return Object{}, err
	}
	var info minio.ObjectInfo
	err := s.retry(ctx, "stat "+key, nil, func(ctx context.Context, _ io.Reader) (err error) {
		info, err = s.core.StatObject(ctx, s.bucket, s.prefix+key, minio.StatObjectOptions{})
		return err
	})
	if err != nil {
		if isNotFound(err) {
			return Object{}, notExist(key)
		}
		return Object{}, s.err("stat", key, err)
	}
	return Object{Key: key, Size: info.Size, ModTime: info.LastModified.UTC()}, nil
}

func isNotFound(err error) bool {
	var resp minio.ErrorResponse
	return errors.As(err, &resp) && (resp.Code == "NoSuchKey" || resp.StatusCode == 404 && resp.Code != "NoSuchBucket")
}

func (s *S3) Delete(ctx context.Context, key string) error {
	if err := cleanKey(key); err != nil {
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

// List walks the keys below prefix in order. A listing that breaks part way
// resumes after the last key delivered, so fn sees each key once.
func (s *S3) List(ctx context.Context, prefix string, fn func(Object) error) error {
	after := ""
	var fnErr error
	err := s.retry(ctx, "list "+prefix, nil, func(ctx context.Context, _ io.Reader) error {
		ctx, cancel := context.WithCancel(ctx)
		defer cancel()
		for o := range s.core.Client.ListObjects(ctx, s.bucket, minio.ListObjectsOptions{Prefix: s.prefix + prefix, Recursive: true, StartAfter: after}) {
			if o.Err != nil {
				return o.Err
			}
			after = o.Key
			if fnErr = fn(Object{Key: strings.TrimPrefix(o.Key, s.prefix), Size: o.Size, ModTime: o.LastModified.UTC()}); fnErr != nil {
				return nil
			}
		}
		return ctx.Err()
	})
	if fnErr != nil {
		return fnErr
	}
	if err != nil {
		return s.err("list", prefix, err)
	}
	return nil
}

// parseSize reads sizes such as 8388608, 8MiB, 16MB or 1GiB.
func parseSize(v string) (int64, error) {
	v = strings.TrimSpace(v)
	i := strings.IndexFunc(v, func(r rune) bool { return r < '0' || r > '9' })
	if i == 0 {
		return 0, fmt.Errorf("bad size %q", v)
	}
	num, unit := v, ""
	if i > 0 {
		num, unit = v[:i], v[i:]
	}
	n, err := strconv.ParseInt(num, 10, 64)
	if err != nil {
		return 0, err
	}
	mult := map[string]int64{"": 1, "B": 1, "KiB": 1 << 10, "MiB": 1 << 20, "GiB": 1 << 30, "KB": 1e3, "MB": 1e6, "GB": 1e9, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30}[unit]
	if mult == 0 {
		return 0, fmt.Errorf("bad size unit %q", unit)
	}
	return n * mult, nil
}

// Sweep aborts multipart uploads below prefix started before olderThan.
func (s *S3) Sweep(ctx context.Context, prefix string, olderThan time.Time) (int, error) {
	n := 0
	for u := range s.core.Client.ListIncompleteUploads(ctx, s.bucket, s.prefix+prefix, true) {
		if u.Err != nil {
			return n, s.err("list uploads", prefix, u.Err)
		}
		if u.Initiated.Before(olderThan) {
			if err := s.core.AbortMultipartUpload(ctx, s.bucket, u.Key, u.UploadID); err == nil {
				n++
			}
		}
	}
	return n, nil
}

// StartUploadForTest starts a multipart upload with one part and leaves it
// unfinished, as a killed Put does. Tests of the cleanup use it.
func (s *S3) StartUploadForTest(ctx context.Context, key string) error {
	id, err := s.core.NewMultipartUpload(ctx, s.bucket, s.prefix+key, minio.PutObjectOptions{})
	if err != nil {
		return err
	}
	_, err = s.core.PutObjectPart(ctx, s.bucket, s.prefix+key, id, 1, bytes.NewReader(make([]byte, minPartSize)), minPartSize, minio.PutObjectPartOptions{})
	return err
}
