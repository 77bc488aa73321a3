// Package azblob is the storage backend for azblob:// URLs: block blobs in a
// container of an Azure storage account, below a prefix. Importing it
// registers the scheme with storage.Open. The URL names the account, the
// container (which must exist), then optionally a prefix and options (the
// README describes them):
//
//	azblob://account/container/prefix?endpoint=http://127.0.0.1:10000/account&key_env=NAME&sas_env=NAME&block-size=8MiB&concurrency=2&stall=60s&retries=5
//
// Credentials come from AZURE_STORAGE_KEY (the account's shared key) or
// AZURE_STORAGE_SAS_TOKEN, or the variable key_env= or sas_env= names; with
// neither set, from the pod's AKS workload identity (said in the log); never
// from the URL.
//
// A Put stages its blocks and commits the block list once, at the end: a Put
// that fails or is killed commits nothing, so nothing partial shows under the
// key. The blocks it staged would stay, billed, until Azure drops them after
// seven days: retention's sweep removes them once they are a day old (see
// Sweep). An object smaller than one block goes up in one request. Memory is block-size ×
// concurrency (default 8 MiB × 2 = 16 MiB) per Put, and an object can have at
// most 50,000 blocks: 390 GiB at the default block size, 3 TiB at 64 MiB.
//
// Requests that meet a transient fault (a dropped connection, a 5xx, 408 or
// 429 answer) are retried with backoff by the SDK's retry policy; a download
// that breaks or stalls (no byte for stall=) part way resumes from where it
// stopped with a range request pinned to the blob's ETag (storage.Download).
package azblob

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"syscall"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/bloberror"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/container"

	"remora.dev/remora/internal/errs"
	"remora.dev/remora/internal/version"
	"remora.dev/remora/storage"
)

func init() { storage.Register("azblob", open) }

// Storage keeps objects as block blobs in an Azure container below a prefix.
type Storage struct {
	client      *container.Client
	account     string
	container   string
	prefix      string // "" or ends in "/"
	endpoint    string // the blob service URL, ending in "/"
	custom      bool   // endpoint= was given
	blockSize   int64
	concurrency int
	xfer        storage.Transfer // stall= and retries=
	creds       *creds
	display     string
	log         *slog.Logger
	clock       storage.DateClock
}

// open returns the storage an azblob:// URL names. It contacts nothing:
// Check does.
func open(_ context.Context, u *url.URL, o storage.Options) (storage.Storage, error) {
	c, err := configure(u)
	if err != nil {
		return nil, err
	}
	s := c.s
	display := *u
	display.RawQuery = ""
	s.display = display.String()
	if s.custom {
		s.display += " at " + s.endpoint
	}
	s.log = o.Logger
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	if s.creds, err = c.credentials(); err != nil {
		return nil, fmt.Errorf("storage %s: %w", s, err)
	}
	if s.creds.from == fromIdentity {
		s.log.Info("no storage key or SAS token set ("+envKey+", "+envSAS+"): using the pod's workload identity", "storage", s.String())
	}
	if s.client, err = s.newClient(); err != nil {
		return nil, badURL(u, "%v", err)
	}
	return s, nil
}

// newClient makes the container client for the storage's credentials.
func (s *Storage) newClient() (*container.Client, error) {
	opts := &container.ClientOptions{ClientOptions: azcore.ClientOptions{
		Retry: policy.RetryOptions{
			MaxRetries:    int32(s.xfer.Retries),
			RetryDelay:    time.Second,
			MaxRetryDelay: 30 * time.Second,
		},
		Telemetry:       policy.TelemetryOptions{ApplicationID: "remora/" + version.Version()},
		PerCallPolicies: []policy.Policy{failFast{}},
		Transport:       &clockTransport{base: &http.Client{Transport: transport(s.xfer.Stall)}, clock: &s.clock},
	}}
	if s.xfer.Retries == 0 {
		opts.Retry.MaxRetries = -1 // the SDK reads 0 as its default, 3
	}
	u := s.endpoint + url.PathEscape(s.container)
	switch s.creds.from {
	case fromKey:
		return container.NewClientWithSharedKeyCredential(u, s.creds.key, opts)
	case fromSAS:
		return container.NewClientWithNoCredential(u+"?"+s.creds.sas, opts)
	}
	return container.NewClient(u, s.creds.token, opts)
}

// transport is Go's default, with the stall time as a bound on the wait for
// response headers, so a server that accepts a request and never answers is
// retried.
func transport(stall time.Duration) *http.Transport {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.ResponseHeaderTimeout = stall
	return tr
}

func (s *Storage) String() string { return s.display }

// Check reports whether the container exists and the credentials may list
// it: the first page of a listing below the prefix, which a SAS limited to
// the container may also ask for.
func (s *Storage) Check(ctx context.Context) error {
	p := s.client.NewListBlobsFlatPager(&container.ListBlobsFlatOptions{Prefix: &s.prefix, MaxResults: ptr(int32(1))})
	if _, err := p.NextPage(ctx); err != nil {
		return s.err("check container", "", err)
	}
	return nil
}

func ptr[T any](v T) *T { return &v }

// err turns an SDK error into one line that says what to fix. It never
// prints a request URL, which for a SAS carries the token.
func (s *Storage) err(op, key string, err error) error {
	what := op
	if key != "" {
		what += " " + key
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("storage %s: %s: %w", s, what, errs.Root(err))
	}
	var resp *azcore.ResponseError
	if errors.As(err, &resp) {
		return s.respErr(what, resp)
	}
	var nerr net.Error
	var dns *net.DNSError
	switch {
	case errors.As(err, &dns) && dns.IsNotFound:
		return fmt.Errorf("storage %s: %s: unknown host %s: check the account name and the endpoint", s, what, dns.Name)
	case errors.As(err, &nerr) || errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, io.ErrUnexpectedEOF):
		return fmt.Errorf("storage %s: %s: cannot reach the blob service (%d retries): %v: check the endpoint and the network",
			s, what, s.xfer.Retries, errs.Root(err))
	}
	return fmt.Errorf("storage %s: %s: %v", s, what, errs.Root(err))
}

// respErr is the line for an answer of the blob service.
func (s *Storage) respErr(what string, resp *azcore.ResponseError) error {
	code := bloberror.Code(resp.ErrorCode)
	switch {
	case code == bloberror.ContainerNotFound:
		return fmt.Errorf("storage %s: container %q does not exist: create it or fix the storage URL", s, s.container)
	case resp.StatusCode == http.StatusForbidden || code == bloberror.NoAuthenticationInformation:
		// A wrong key (AuthenticationFailed; AuthorizationFailure from
		// Azurite) and a SAS without a permission share the status.
		return fmt.Errorf("storage %s: %s: access denied (%s): check %s, and that it may read, write, list and delete in the container", s, what, code, s.creds.envs)
	case code == bloberror.AccountIsDisabled || code == bloberror.ResourceNotFound && resp.StatusCode == http.StatusNotFound:
		return fmt.Errorf("storage %s: %s: %s: check the account name and the endpoint", s, what, resp.ErrorCode)
	case code != "":
		return fmt.Errorf("storage %s: %s: %s (HTTP %d)", s, what, code, resp.StatusCode)
	}
	return fmt.Errorf("storage %s: %s: HTTP %d", s, what, resp.StatusCode)
}

// isNotFound tells a missing blob from a missing container.
func isNotFound(err error) bool {
	var resp *azcore.ResponseError
	return bloberror.HasCode(err, bloberror.BlobNotFound) ||
		errors.As(err, &resp) && resp.StatusCode == http.StatusNotFound && resp.ErrorCode == "" // a HEAD has no body
}
