package azblob

import (
	"context"
	"io"
	"io/fs"

	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/blob"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/container"

	"remora.dev/remora/internal/errs"
	"remora.dev/remora/storage"
)

// Open returns the blob's content. When the connection breaks part way, the
// SDK's retry reader asks for the rest with a range request pinned to the
// blob's ETag, so a replaced blob is never spliced in; each resumption is
// logged.
func (s *Storage) Open(ctx context.Context, key string) (io.ReadCloser, error) {
	if err := storage.CheckKey(key); err != nil {
		return nil, err
	}
	resp, err := s.client.NewBlobClient(s.prefix+key).DownloadStream(ctx, nil)
	if err != nil {
		if isNotFound(err) {
			return nil, storage.NotExist(key)
		}
		return nil, s.err("get", key, err)
	}
	rr := resp.NewRetryReader(ctx, &blob.RetryReaderOptions{
		MaxRetries: int32(max(s.retries, 1)),
		OnFailedRead: func(n int32, err error, r blob.HTTPRange, retry bool) {
			if retry {
				s.log.Warn("storage download broke, resuming", "storage", s.display, "key", key, "offset", r.Offset,
					"attempt", n, "error", errs.Root(err).Error())
			}
		},
		EarlyCloseAsError: true,
	})
	return &reader{s: s, key: key, rc: rr}, nil
}

// reader turns the retry reader's final error into one line.
type reader struct {
	s   *Storage
	key string
	rc  io.ReadCloser
	end error
}

func (r *reader) Read(p []byte) (int, error) {
	if r.end != nil {
		return 0, r.end
	}
	n, err := r.rc.Read(p)
	if err != nil {
		if err != io.EOF {
			err = r.s.err("get", r.key, err)
		}
		r.end = err
	}
	return n, err
}

func (r *reader) Close() error {
	if r.end == nil {
		r.end = fs.ErrClosed
	}
	return r.rc.Close()
}

func (s *Storage) Stat(ctx context.Context, key string) (storage.Object, error) {
	if err := storage.CheckKey(key); err != nil {
		return storage.Object{}, err
	}
	p, err := s.client.NewBlobClient(s.prefix+key).GetProperties(ctx, nil)
	if err != nil {
		if isNotFound(err) {
			return storage.Object{}, storage.NotExist(key)
		}
		return storage.Object{}, s.err("stat", key, err)
	}
	o := storage.Object{Key: key}
	if p.ContentLength != nil {
		o.Size = *p.ContentLength
	}
	if p.LastModified != nil {
		o.ModTime = p.LastModified.UTC()
	}
	return o, nil
}

func (s *Storage) Delete(ctx context.Context, key string) error {
	if err := storage.CheckKey(key); err != nil {
		return err
	}
	_, err := s.client.NewBlobClient(s.prefix+key).Delete(ctx, nil)
	if err != nil && !isNotFound(err) {
		return s.err("delete", key, err)
	}
	return nil
}

// List walks the blobs below prefix, a page at a time, in the lexical order
// the service lists them in. Each page request is retried on its own.
func (s *Storage) List(ctx context.Context, prefix string, fn func(storage.Object) error) error {
	full := s.prefix + prefix
	p := s.client.NewListBlobsFlatPager(&container.ListBlobsFlatOptions{Prefix: &full})
	for p.More() {
		page, err := p.NextPage(ctx)
		if err != nil {
			return s.err("list", prefix, err)
		}
		for _, b := range page.Segment.BlobItems {
			if b.Name == nil || b.Properties == nil {
				continue
			}
			o := storage.Object{Key: (*b.Name)[len(s.prefix):]}
			if b.Properties.ContentLength != nil {
				o.Size = *b.Properties.ContentLength
			}
			if b.Properties.LastModified != nil {
				o.ModTime = b.Properties.LastModified.UTC()
			}
			if err := fn(o); err != nil {
				return err
			}
		}
	}
	return nil
}
