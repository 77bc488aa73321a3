package s3

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync/atomic"
	"time"

	"github.com/minio/minio-go/v7"

	"remora.dev/remora/storage"
)

// errSlowPage is why a listing attempt was cancelled: its next page did not
// arrive within the stall timeout. A page is small (at most 1,000 keys), and
// minio-go reads it whole before it hands out a key, so a server that
// trickles it moves data and yet delivers nothing: the watch counts pages,
// not bytes. It is a stall, and retried as one.
var errSlowPage = fmt.Errorf("%w: a listing page did not arrive in time", errStalled)

// List walks the keys below prefix in order. A listing that breaks or stalls
// part way resumes after the last key delivered, so fn sees each key once.
func (s *Storage) List(ctx context.Context, prefix string, fn func(storage.Object) error) error {
	after := ""
	var fnErr error
	err := s.retry(ctx, "list "+prefix, nil, func(ctx context.Context, _ io.Reader) error {
		l := s.startListing(ctx)
		defer l.stop()
		for o := range s.core.Client.ListObjectsIter(l.ctx, s.bucket, minio.ListObjectsOptions{Prefix: s.prefix + prefix, Recursive: true, StartAfter: after}) {
			if o.Err != nil {
				return l.err(o.Err)
			}
			l.got()
			after = o.Key
			fnErr = fn(storage.Object{Key: strings.TrimPrefix(o.Key, s.prefix), Size: o.Size, ModTime: o.LastModified.UTC()})
			l.next()
			if fnErr != nil {
				return nil
			}
		}
		// The iterator ends quietly when its context ends between pages.
		return l.err(l.ctx.Err())
	})
	if fnErr != nil {
		return fnErr
	}
	if err != nil {
		return s.err("list", prefix, err)
	}
	return nil
}

// Sweep aborts multipart uploads below prefix started before olderThan.
func (s *Storage) Sweep(ctx context.Context, prefix string, olderThan time.Time) (int, error) {
	n := 0
	l := s.startListing(ctx)
	defer l.stop()
	for u := range s.core.Client.ListIncompleteUploads(l.ctx, s.bucket, s.prefix+prefix, true) {
		if u.Err != nil {
			return n, s.err("list uploads", prefix, l.err(u.Err))
		}
		l.got()
		if u.Initiated.Before(olderThan) {
			if err := s.core.AbortMultipartUpload(ctx, s.bucket, u.Key, u.UploadID); err == nil {
				n++
			}
		}
		l.next()
	}
	if err := l.ctx.Err(); err != nil {
		return n, s.err("list uploads", prefix, l.err(err))
	}
	return n, nil
}

// listing watches one listing attempt: its context is cancelled with
// errSlowPage when no item arrives for the stall timeout. The time the caller
// spends on an item, from got to next, does not count.
type listing struct {
	ctx    context.Context
	cancel context.CancelCauseFunc
	dog    *storage.Watchdog
	busy   atomic.Bool
}

func (s *Storage) startListing(ctx context.Context) *listing {
	l := &listing{}
	l.ctx, l.cancel = context.WithCancelCause(ctx)
	l.dog = storage.Watch(s.xfer.Stall, func() {
		if !l.busy.Load() {
			l.cancel(errSlowPage)
		}
	})
	return l
}

// got is called when an item arrives, next when the caller is done with it.
func (l *listing) got() { l.busy.Store(true) }

func (l *listing) next() {
	l.dog.Kick()
	l.busy.Store(false)
}

func (l *listing) stop() {
	l.dog.Stop()
	l.cancel(nil)
}

// err is the attempt's error: errSlowPage when the watch cancelled it.
func (l *listing) err(err error) error {
	if err != nil && errors.Is(context.Cause(l.ctx), errSlowPage) {
		return errSlowPage
	}
	return err
}
