package azblob

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/runtime"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/blockblob"

	"remora.dev/remora/storage"
)

// Put stores r under key with the SDK's UploadStream: blocks of block-size,
// concurrency of them in flight (and in memory) at once, committed in one
// block list at the end; an object smaller than a block goes in one request.
// On any failure nothing is committed, so the key keeps what it held.
//
// UploadStream reads its source to the end even after a block failed or ctx
// ended, and reports whichever failure came first, perhaps a sibling's
// cancellation: so the first failed request ends the Put's context (see
// failFast) and the reader given to the SDK stops at once when it ends.
func (s *Storage) Put(ctx context.Context, key string, r io.Reader) (int64, error) {
	if err := storage.CheckKey(key); err != nil {
		return 0, err
	}
	pctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	pctx = context.WithValue(pctx, putKey{}, cancel)
	cr := &counting{ctx: pctx, r: r, limit: s.blockSize * maxBlocks}
	_, err := s.client.NewBlockBlobClient(s.prefix+key).UploadStream(pctx, cr, &blockblob.UploadStreamOptions{
		BlockSize:   s.blockSize,
		Concurrency: s.concurrency,
	})
	var failed *requestFailed
	switch {
	case errors.As(context.Cause(pctx), &failed):
		return 0, s.err("put", key, failed.err)
	case cr.err != nil: // the reader's own error, as it gave it
		return 0, cr.err
	case cr.n > cr.limit:
		return 0, fmt.Errorf("storage %s: put %s: object exceeds 50,000 blocks: raise block-size in the storage URL", s, key)
	case ctx.Err() != nil:
		return 0, s.err("put", key, ctx.Err())
	case err != nil:
		return 0, s.err("put", key, err)
	}
	return cr.n, nil
}

// putKey carries a Put's cancel function in its requests' contexts.
type putKey struct{}

// requestFailed is why a Put's context ended: one of its requests failed,
// after the SDK's retries.
type requestFailed struct{ err error }

func (e *requestFailed) Error() string { return e.err.Error() }

// failFast is a per-call policy (it sees a request's final outcome, after
// retries): a request of a Put that fails ends the Put's context, with the
// failure as its cause.
type failFast struct{}

func (failFast) Do(req *policy.Request) (*http.Response, error) {
	resp, err := req.Next()
	cancel, ok := req.Raw().Context().Value(putKey{}).(context.CancelCauseFunc)
	if !ok || req.Raw().Context().Err() != nil {
		return resp, err
	}
	switch {
	case err != nil:
		cancel(&requestFailed{err})
	case resp.StatusCode >= http.StatusBadRequest:
		cancel(&requestFailed{runtime.NewResponseError(resp)}) // it buffers the body: the SDK still reads it
	}
	return resp, err
}

// counting counts what is read from r and keeps r's error apart from the
// SDK's. It stops when the Put's context ends, or once more is read than a
// blob of 50,000 blocks holds.
type counting struct {
	ctx   context.Context
	r     io.Reader
	n     int64
	limit int64
	err   error // r's
}

func (c *counting) Read(p []byte) (int, error) {
	if err := context.Cause(c.ctx); err != nil {
		return 0, err
	}
	n, err := c.r.Read(p)
	c.n += int64(n)
	if c.n > c.limit {
		return 0, errors.New("too large")
	}
	if err != nil && err != io.EOF {
		c.err = err
	}
	return n, err
}
