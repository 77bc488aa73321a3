package s3

import (
	"context"
	"fmt"
	"io"
	"sort"
	"time"

	"github.com/minio/minio-go/v7"

	"remora.dev/remora/storage"
)

// Put stores r under key: in one request when it fits in one part, else as a
// multipart upload, which is completed only once every part is stored and is
// aborted on failure, so nothing partial ever shows under key.
func (s *Storage) Put(ctx context.Context, key string, r io.Reader) (int64, error) {
	if err := storage.CheckKey(key); err != nil {
		return 0, err
	}
	obj := s.prefix + key
	buf := make([]byte, s.partSize)
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
	u := &upload{s: s, key: key, obj: obj}
	err := s.retry(ctx, "start upload "+key, nil, func(ctx context.Context, _ io.Reader) (err error) {
		u.id, err = s.core.NewMultipartUpload(ctx, s.bucket, obj, minio.PutObjectOptions{})
		return err
	})
	if err != nil {
		return 0, s.err("put", key, err)
	}
	total, err := u.send(ctx, buf, r)
	if err != nil {
		u.abort(ctx)
		return 0, err
	}
	return total, nil
}

// partSizeAt is the size of part num (from 1): the configured size, doubled
// every partsPerStep parts, at most maxPartSize.
func (s *Storage) partSizeAt(num int) int64 {
	return min(s.partSize<<((num-1)/partsPerStep), maxPartSize)
}

// upload is a multipart upload in progress.
type upload struct {
	s        *Storage
	key, obj string
	id       string
}

type part struct {
	num int
	buf []byte
}

// sent is what the sender of the parts reports when they are all sent.
type sent struct {
	parts []minio.CompletePart
	err   error
}

// send uploads first and then the rest of r in parts, each sent while the
// next is read, so reading and uploading overlap and at most two parts are
// held in memory; then it completes the upload.
func (u *upload) send(ctx context.Context, first []byte, r io.Reader) (int64, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	parts := make(chan part)
	free := make(chan []byte, 1)
	done := make(chan sent, 1)
	go func() { done <- u.sendParts(ctx, cancel, parts, free) }()
	total, readErr := u.readParts(ctx, first, r, parts, free)
	close(parts)
	res := <-done
	switch {
	case readErr != nil:
		return 0, readErr
	case res.err != nil:
		return 0, res.err
	case ctx.Err() != nil:
		return 0, ctx.Err()
	}
	sort.Slice(res.parts, func(i, j int) bool { return res.parts[i].PartNumber < res.parts[j].PartNumber })
	err := u.s.retry(ctx, "complete upload "+u.key, nil, func(ctx context.Context, _ io.Reader) error {
		_, err := u.s.core.CompleteMultipartUpload(ctx, u.s.bucket, u.obj, u.id, res.parts, minio.PutObjectOptions{})
		return err
	})
	if err != nil {
		return 0, u.s.err("put", u.key, err)
	}
	return total, nil
}

// readParts hands first and then the parts it reads from r to the sender,
// reusing the buffers the sender gives back through free, until r ends, r
// fails or ctx ends. It returns the number of bytes handed over and r's
// error, or one when the object needs more than maxParts parts.
func (u *upload) readParts(ctx context.Context, first []byte, r io.Reader, parts chan<- part, free <-chan []byte) (total int64, err error) {
	hand := func(p part) bool {
		total += int64(len(p.buf))
		select {
		case parts <- p:
		case <-ctx.Done():
		}
		return ctx.Err() == nil
	}
	num, buf := 1, first
	for hand(part{num, buf}) {
		num++
		select {
		case buf = <-free:
		default:
			buf = nil
		}
		if size := u.s.partSizeAt(num); int64(cap(buf)) != size {
			buf = make([]byte, size)
		}
		buf = buf[:cap(buf)]
		n, err := io.ReadFull(r, buf)
		if err == io.EOF {
			return total, nil
		}
		if err != nil && err != io.ErrUnexpectedEOF {
			return total, err
		}
		if num > maxParts {
			return total, fmt.Errorf("storage %s: put %s: object exceeds %d parts; raise part-size in the storage URL", u.s, u.key, maxParts)
		}
		if err == io.ErrUnexpectedEOF { // the last part, shorter
			hand(part{num, buf[:n]})
			return total, nil
		}
	}
	return total, nil
}

// sendParts uploads the parts it is handed until the channel closes, and
// gives each buffer back through free unless an abandoned attempt may still
// be reading it. After a failure it cancels ctx and only drains the channel.
func (u *upload) sendParts(ctx context.Context, cancel context.CancelFunc, parts <-chan part, free chan<- []byte) (res sent) {
	for p := range parts {
		reusable := true
		if res.err == nil {
			var cp minio.CompletePart
			var err error
			cp, reusable, err = u.sendPart(ctx, p)
			if err != nil {
				res.err = u.s.err("put", u.key, err)
				cancel()
			} else {
				res.parts = append(res.parts, cp)
			}
		}
		if reusable {
			select {
			case free <- p.buf[:cap(p.buf)]:
			default:
			}
		}
	}
	return res
}

// sendPart uploads one part, retrying. Its buffer is reusable after one
// attempt only: the transport of an abandoned attempt may still read it.
func (u *upload) sendPart(ctx context.Context, p part) (cp minio.CompletePart, reusable bool, err error) {
	attempts := 0
	err = u.s.retry(ctx, fmt.Sprintf("put %s part %d", u.key, p.num), p.buf, func(ctx context.Context, body io.Reader) error {
		attempts++
		op, err := u.s.core.PutObjectPart(ctx, u.s.bucket, u.obj, u.id, p.num, body, int64(len(p.buf)), minio.PutObjectPartOptions{})
		cp = minio.CompletePart{PartNumber: p.num, ETag: op.ETag}
		return err
	})
	return cp, attempts <= 1, err
}

// abort removes the upload and its parts, even after ctx has ended.
func (u *upload) abort(ctx context.Context) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer cancel()
	_ = u.s.retry(ctx, "abort upload "+u.key, nil, func(ctx context.Context, _ io.Reader) error {
		return u.s.core.AbortMultipartUpload(ctx, u.s.bucket, u.obj, u.id)
	})
}
