// Package gcs is the storage backend for gs:// URLs: objects in a Google
// Cloud Storage bucket, below a prefix. Importing it registers the scheme
// with storage.Open. The URL names the bucket, which must exist, then
// optionally a prefix and options (the README describes them):
//
//	gs://bucket/prefix?credentials_file=/secrets/sa.json&chunk-size=16MiB&stall=60s&retries=5
//	gs://bucket/prefix?endpoint=http://127.0.0.1:4443/storage/v1/&anonymous=true
//
// Credentials are a service account key: credentials_file=PATH, else the
// variable credentials_env=NAME names, else REMORA_GCS_CREDENTIALS (the
// key's JSON, as a storage Secret sets it), else the file
// GOOGLE_APPLICATION_CREDENTIALS names. The ambient identity (GKE Workload
// Identity, the metadata server, gcloud's default credentials) is used only
// with credentials=ambient, and no authentication only with anonymous=true
// and an endpoint= (an emulator): a missing key fails rather than falling
// back. STORAGE_EMULATOR_HOST, which would turn authentication off inside
// the client library, is refused.
//
// Put streams the object as a resumable upload in chunks of chunk-size
// (default 16 MiB, a multiple of 256 KiB): memory is one chunk per Put. GCS
// makes the object visible only when the upload is finalized, and a Put that
// fails or is cancelled never finalizes it, so nothing partial is ever seen
// under the key and an overwritten object keeps its old content. An
// abandoned upload session holds no object and expires on the server within
// a week; there is nothing for a sweep to list or remove.
//
// Open reads the object through the JSON API; when the connection breaks or
// stalls (no byte for stall=) part way, it asks for the rest with a range
// request pinned to the object's generation, so a replaced object is never
// spliced in. Requests meeting a transient fault (a dropped connection, 408, 429,
// 5xx) are retried up to retries= more times with backoff (1 s doubling to
// at most 30 s).
package gcs

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	gcs "cloud.google.com/go/storage"
	"github.com/googleapis/gax-go/v2"
	"google.golang.org/api/iterator"
	"google.golang.org/api/option"

	"remora.dev/remora/internal/errs"
	"remora.dev/remora/internal/version"
	"remora.dev/remora/storage"
)

func init() { storage.Register("gs", open) }

// Storage keeps objects in a GCS bucket below a prefix.
type Storage struct {
	client    *gcs.Client
	bkt       *gcs.BucketHandle
	bucket    string
	prefix    string // "" or ends in "/"
	endpoint  string // "" for Google Cloud Storage itself
	chunkSize int
	xfer      storage.Transfer // stall= (downloads) and retries=
	creds     string           // where the credentials come from, for errors
	display   string
	log       *slog.Logger
}

// open returns the storage a gs:// URL names. It reads the credentials but
// contacts nothing: Check does.
func open(ctx context.Context, u *url.URL, o storage.Options) (storage.Storage, error) {
	c, err := configure(u)
	if err != nil {
		return nil, err
	}
	s := c.s
	display := *u
	display.RawQuery = ""
	s.display = display.String()
	if s.endpoint != "" {
		s.display += " at " + s.endpoint
	}
	opts, from, err := c.credentials()
	if err != nil {
		return nil, fmt.Errorf("storage %s: %w", s, err)
	}
	s.creds = from
	opts = append(opts, gcs.WithJSONReads(), option.WithUserAgent("remora/"+version.Version()), option.WithTelemetryDisabled())
	if s.endpoint != "" {
		opts = append(opts, option.WithEndpoint(s.endpoint))
	}
	// The client lives as long as the storage: not tied to the caller's ctx.
	s.client, err = gcs.NewClient(context.WithoutCancel(ctx), opts...)
	if err != nil {
		return nil, fmt.Errorf("storage %s: %v", s, err)
	}
	// Every operation may be retried, uploads included: a Put rewrites the
	// whole object, so a repeated request stores the same bytes.
	s.client.SetRetry(gcs.WithPolicy(gcs.RetryAlways), gcs.WithMaxAttempts(s.xfer.Retries+1),
		gcs.WithBackoff(gax.Backoff{Initial: time.Second, Max: 30 * time.Second, Multiplier: 2}))
	s.bkt = s.client.Bucket(s.bucket)
	s.log = o.Logger
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	return s, nil
}

func (s *Storage) String() string { return s.display }

// Check reports whether the bucket exists and the credentials may list it
// below the prefix: a listing of one object, which needs no more than what
// Remora uses (bucket-wide metadata may be denied to a key limited to its
// objects).
func (s *Storage) Check(ctx context.Context) error {
	it := s.bkt.Objects(ctx, &gcs.Query{Prefix: s.prefix})
	it.PageInfo().MaxSize = 1
	if _, err := it.Next(); err != nil && err != iterator.Done {
		return s.err("check bucket", "", err)
	}
	return nil
}

// Put streams r to key as one resumable upload, finalized only once r has
// ended: a failure or cancellation part way aborts it, leaving nothing new.
func (s *Storage) Put(ctx context.Context, key string, r io.Reader) (int64, error) {
	if err := storage.CheckKey(key); err != nil {
		return 0, err
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	src := &source{ctx: ctx, r: r}
	obj := s.bkt.Object(s.prefix + key).Retryer(gcs.WithErrorFunc(s.uploadRetry(key, src)))
	w := obj.NewWriter(ctx)
	w.ChunkSize = s.chunkSize
	n, err := io.Copy(w, src)
	if err != nil {
		cancel() // before Close: a cancelled Writer never finalizes the upload
		_ = w.Close()
		if src.err != nil {
			return 0, src.err
		}
		return 0, s.err("put", key, err)
	}
	if err := w.Close(); err != nil {
		return 0, s.err("put", key, err)
	}
	return n, nil
}

// uploadRetry decides whether a failed upload request is tried again: a
// transient fault, at most s.xfer.Retries times in a row. The client library
// counts no attempts for uploads (it retries them until the context ends),
// so the count is here; it starts again once the upload has taken more of
// the source, which it does only after the chunk before went through.
func (s *Storage) uploadRetry(key string, src *source) func(error) bool {
	var mu sync.Mutex
	var fails int
	last := int64(-1)
	return func(err error) bool {
		if !gcs.ShouldRetry(err) {
			return false
		}
		mu.Lock()
		defer mu.Unlock()
		if n := src.n.Load(); n != last {
			last, fails = n, 0
		}
		fails++
		if fails > s.xfer.Retries {
			return false
		}
		s.log.Warn("storage request failed, retrying", "storage", s.display, "op", "put "+key,
			"attempt", fails, "of", s.xfer.Retries+1, "error", errs.Root(err).Error())
		return true
	}
}

// source is Put's reader: it counts the bytes read, remembers the caller's
// reader's error, to return as is, and stops at the end of the context.
type source struct {
	ctx context.Context
	r   io.Reader
	n   atomic.Int64
	err error
}

func (s *source) Read(p []byte) (int, error) {
	if err := s.ctx.Err(); err != nil {
		s.err = err
		return 0, err
	}
	n, err := s.r.Read(p)
	s.n.Add(int64(n))
	if err != nil && err != io.EOF {
		s.err = err
	}
	return n, err
}

// Open returns the object's content. When the connection breaks or stalls
// part way, the download asks for the rest of the same generation of the
// object, so a replaced object is never spliced in (storage.Download).
func (s *Storage) Open(ctx context.Context, key string) (io.ReadCloser, error) {
	if err := storage.CheckKey(key); err != nil {
		return nil, err
	}
	return storage.Download{
		Storage: s, Key: key, Transfer: s.xfer, Log: s.log,
		OpenAt:    s.openAt(s.prefix + key),
		Retryable: gcs.ShouldRetry,
		NotFound:  func(err error) bool { return errors.Is(err, gcs.ErrObjectNotExist) },
		Err:       func(err error) error { return s.err("get", key, err) },
	}.Start(ctx)
}

// openAt asks for an object from off; a resumption only from the generation
// that answered first.
func (s *Storage) openAt(name string) func(ctx context.Context, off int64, pin storage.Version) (io.ReadCloser, storage.Version, error) {
	return func(ctx context.Context, off int64, pin storage.Version) (io.ReadCloser, storage.Version, error) {
		obj := s.bkt.Object(name)
		if pin.ID != "" {
			gen, err := strconv.ParseInt(pin.ID, 10, 64)
			if err != nil {
				return nil, storage.Version{}, err
			}
			obj = obj.Generation(gen)
		}
		r, err := obj.NewRangeReader(ctx, off, -1)
		if pin.ID != "" && errors.Is(err, gcs.ErrObjectNotExist) {
			return nil, storage.Version{}, storage.ErrChanged // that generation is gone
		}
		if err != nil {
			return nil, storage.Version{}, err
		}
		return r, storage.Version{ID: strconv.FormatInt(r.Attrs.Generation, 10), Size: r.Attrs.Size}, nil
	}
}

func (s *Storage) Stat(ctx context.Context, key string) (storage.Object, error) {
	if err := storage.CheckKey(key); err != nil {
		return storage.Object{}, err
	}
	a, err := s.bkt.Object(s.prefix + key).Attrs(ctx)
	if errors.Is(err, gcs.ErrObjectNotExist) {
		return storage.Object{}, storage.NotExist(key)
	}
	if err != nil {
		return storage.Object{}, s.err("stat", key, err)
	}
	return storage.Object{Key: key, Size: a.Size, ModTime: modTime(a)}, nil
}

// modTime is when the object's content was written: its generation's
// creation (Updated also moves when only metadata changes).
func modTime(a *gcs.ObjectAttrs) time.Time {
	if !a.Created.IsZero() {
		return a.Created.UTC()
	}
	return a.Updated.UTC()
}

func (s *Storage) Delete(ctx context.Context, key string) error {
	if err := storage.CheckKey(key); err != nil {
		return err
	}
	err := s.bkt.Object(s.prefix + key).Delete(ctx)
	if err != nil && !errors.Is(err, gcs.ErrObjectNotExist) {
		return s.err("delete", key, err)
	}
	return nil
}

// List calls fn for the objects below prefix, in the lexical order GCS
// lists them. Names that are no valid key (folder placeholders ending in
// "/") are skipped.
func (s *Storage) List(ctx context.Context, prefix string, fn func(storage.Object) error) error {
	q := &gcs.Query{Prefix: s.prefix + prefix}
	if err := q.SetAttrSelection([]string{"Name", "Size", "Created", "Updated"}); err != nil {
		return err
	}
	it := s.bkt.Objects(ctx, q)
	for {
		a, err := it.Next()
		if err == iterator.Done {
			return nil
		}
		if err != nil {
			return s.err("list", prefix, err)
		}
		key := strings.TrimPrefix(a.Name, s.prefix)
		if storage.CheckKey(key) != nil {
			continue
		}
		if err := fn(storage.Object{Key: key, Size: a.Size, ModTime: modTime(a)}); err != nil {
			return err
		}
	}
}
