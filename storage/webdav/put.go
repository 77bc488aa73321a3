package webdav

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sync"
	"time"

	"remora.dev/remora/storage"
)

// errStalled is why a request was cancelled: no data moved for the stall
// time.
var errStalled = storage.ErrStalled

// Put streams r to a temporary name in the key's collection, creating the
// collections below the root that are missing, then renames it to the key.
// On failure it removes the temporary file.
func (s *Storage) Put(ctx context.Context, key string, r io.Reader) (int64, error) {
	if err := checkKey(key); err != nil {
		return 0, err
	}
	if err := s.mkcols(ctx, parent(key)); err != nil {
		return 0, s.err("put", key, err)
	}
	var rnd [6]byte
	_, _ = rand.Read(rnd[:])
	tmp := "." + baseName(key) + tmpMarker + hex.EncodeToString(rnd[:])
	if dir := parent(key); dir != "" {
		tmp = dir + "/" + tmp
	}
	n, err := s.upload(ctx, key, tmp, r)
	if err == nil {
		err = s.move(ctx, tmp, key)
	}
	if err != nil {
		s.remove(ctx, tmp)
		return n, err
	}
	return n, nil
}

// mkcols makes the collection dir (a key's parent, "" for the root) and its
// missing parents, never the root: a missing root is errNoRoot. The common
// case, an existing collection, costs one request.
func (s *Storage) mkcols(ctx context.Context, dir string) error {
	if dir == "" {
		return nil
	}
	for try := 0; ; try++ {
		resp, _, err := s.do(ctx, "MKCOL", dir+"/", nil)
		if err != nil {
			return err
		}
		switch resp.StatusCode {
		case http.StatusCreated, http.StatusMethodNotAllowed: // made, or already there
			return nil
		case http.StatusConflict: // a parent is missing
			if parent(dir) == "" {
				return errNoRoot
			}
			if try > 0 {
				return unexpected(resp)
			}
			if err := s.mkcols(ctx, parent(dir)); err != nil {
				return err
			}
		default:
			return unexpected(resp)
		}
	}
}

// upload PUTs r to tmp, watched: a body that the server stops taking for
// the stall timeout ends the request.
func (s *Storage) upload(ctx context.Context, key, tmp string, r io.Reader) (int64, error) {
	rctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	body := &watchedBody{r: r, stall: s.xfer.Stall}
	body.timer = time.AfterFunc(s.xfer.Stall, func() { cancel(errStalled) })
	defer body.stop()
	req, err := s.newRequest(rctx, http.MethodPut, tmp, body)
	if err != nil {
		return 0, err
	}
	// Chunked, of unknown length; a server that refuses (a login, a right,
	// a missing collection) says so before the body goes out.
	req.ContentLength = -1
	req.Header.Set("Expect", "100-continue")
	req.Header.Set("Content-Type", "application/octet-stream")
	resp, err := s.client.Do(req)
	n, rerr := body.result()
	switch {
	case rerr != nil && !errors.Is(rerr, io.EOF):
		if err == nil {
			resp.Body.Close()
		}
		return n, fmt.Errorf("storage %s: put %s: %w", s, key, rerr)
	case err != nil && ctx.Err() != nil:
		return n, fmt.Errorf("storage %s: put %s: %w", s, key, ctx.Err())
	case err != nil && errors.Is(context.Cause(rctx), errStalled):
		return n, s.err("put", key, errStalled)
	case err != nil:
		return n, s.err("put", key, err)
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
	switch resp.StatusCode {
	case http.StatusCreated, http.StatusNoContent, http.StatusOK:
		return n, nil
	case http.StatusConflict:
		if parent(key) == "" {
			return n, s.err("put", key, errNoRoot)
		}
	}
	return n, s.err("put", key, unexpected(resp))
}

// move renames the temporary file to the key, replacing what was there. The
// temporary name is this Put's alone: when a repeated MOVE finds it gone,
// the attempt whose answer was lost moved it.
func (s *Storage) move(ctx context.Context, tmp, key string) error {
	resp, retried, err := s.do(ctx, "MOVE", tmp, map[string]string{"Destination": s.url(key), "Overwrite": "T"})
	if err != nil {
		return s.err("put", key, err)
	}
	if retried && resp.StatusCode == http.StatusNotFound {
		return nil
	}
	if resp.StatusCode != http.StatusCreated && resp.StatusCode != http.StatusNoContent {
		return s.err("put", key, fmt.Errorf("rename from its temporary name: %w", unexpected(resp)))
	}
	return nil
}

// remove deletes a temporary file after a failed Put, even when ctx has
// ended. What it cannot remove, Sweep does later.
func (s *Storage) remove(ctx context.Context, tmp string) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer cancel()
	if err := s.Delete(ctx, tmp); err != nil {
		s.log.Warn("storage: could not remove a temporary file", "storage", s.display, "file", tmp, "error", err.Error())
	}
}

// uploadBuf is how much of a PUT's body goes to the connection in one
// write. The transport's own copy goes 32 KiB at a time, and with chunked
// encoding each piece costs two write syscalls (its header, then its data):
// 64 Ki syscalls per GiB, where 256 KiB pieces make 8 Ki.
const uploadBuf = 256 << 10

// watchedBody is a request body that counts what it read, keeps the
// reader's own error, and pushes back the stall timer on each read.
type watchedBody struct {
	r     io.Reader
	stall time.Duration
	timer *time.Timer
	mu    sync.Mutex
	n     int64
	err   error
}

func (b *watchedBody) Read(p []byte) (int, error) {
	n, err := b.r.Read(p)
	b.mu.Lock()
	b.n += int64(n)
	if err != nil && b.err == nil {
		b.err = err
	}
	b.mu.Unlock()
	if err == nil {
		b.timer.Reset(b.stall)
	} else {
		// All sent: the transport's response header timeout takes over.
		b.timer.Stop()
	}
	return n, err
}

// WriteTo gives the transport the body uploadBuf at a time (it prefers
// WriteTo to its own 32 KiB copy).
func (b *watchedBody) WriteTo(w io.Writer) (int64, error) {
	buf := make([]byte, uploadBuf)
	var n int64
	for {
		m, err := io.ReadFull(b, buf)
		if m > 0 {
			k, werr := w.Write(buf[:m])
			n += int64(k)
			if werr != nil {
				return n, werr
			}
		}
		switch err {
		case nil:
		case io.EOF, io.ErrUnexpectedEOF:
			return n, nil
		default:
			return n, err
		}
	}
}

func (b *watchedBody) stop() { b.timer.Stop() }

func (b *watchedBody) result() (int64, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.n, b.err
}
