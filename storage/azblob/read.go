package azblob

import (
	"context"
	"errors"
	"io"
	"net/http"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/blob"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/bloberror"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/container"

	"remora.dev/remora/storage"
)

// Open returns the blob's content. When the connection breaks or stalls
// part way, the download asks for the rest with a range request pinned to
// the blob's ETag, so a replaced blob is never spliced in; each resumption
// is logged.
func (s *Storage) Open(ctx context.Context, key string) (io.ReadCloser, error) {
	if err := storage.CheckKey(key); err != nil {
		return nil, err
	}
	return storage.Download{
		Storage: s, Key: key, Transfer: s.xfer, Log: s.log,
		OpenAt:    s.openAt(s.prefix + key),
		Retryable: transient, NotFound: isNotFound,
		Err: func(err error) error { return s.err("get", key, err) },
	}.Start(ctx)
}

// openAt asks for a blob from off; a resumption only from the version (ETag)
// that answered first.
func (s *Storage) openAt(name string) func(ctx context.Context, off int64, pin storage.Version) (io.ReadCloser, storage.Version, error) {
	return func(ctx context.Context, off int64, pin storage.Version) (io.ReadCloser, storage.Version, error) {
		opts := &blob.DownloadStreamOptions{Range: blob.HTTPRange{Offset: off}}
		if pin.ID != "" {
			etag := azcore.ETag(pin.ID)
			opts.AccessConditions = &blob.AccessConditions{ModifiedAccessConditions: &blob.ModifiedAccessConditions{IfMatch: &etag}}
		}
		resp, err := s.client.NewBlobClient(name).DownloadStream(ctx, opts)
		if bloberror.HasCode(err, bloberror.ConditionNotMet) {
			return nil, storage.Version{}, storage.ErrChanged
		}
		if err != nil {
			return nil, storage.Version{}, err
		}
		v := storage.Version{Size: -1}
		if resp.ETag != nil {
			v.ID = string(*resp.ETag)
		}
		if off == 0 && resp.ContentLength != nil {
			v.Size = *resp.ContentLength
		}
		return resp.Body, v, nil
	}
}

// transient tells the faults worth another request: the network's, and the
// service's 408, 429 and 5xx answers; not its other answers.
func transient(err error) bool {
	var resp *azcore.ResponseError
	if errors.As(err, &resp) {
		return resp.StatusCode == http.StatusRequestTimeout || resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode >= 500
	}
	return true
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
