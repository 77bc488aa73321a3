package s3

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net/http"
	"net/url"
	"regexp"
	"strings"

	"github.com/minio/minio-go/v7"

	"remora.dev/remora/internal/certpool"
	"remora.dev/remora/storage"
)

// example is the URL that errors about a malformed one show.
const example = "s3://bucket/prefix?endpoint=host:port&region=us-east-1&insecure=true"

var bucketRE = regexp.MustCompile(`^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$`)

// config is what a URL sets up before the client is made.
type config struct {
	s     *Storage
	minio minio.Options
	roots *x509.CertPool // from ca-file=; nil trusts the system's CAs
	cloud bool           // credentials=cloud: the cloud identity, not keys
}

// options are the URL's options, in the order they are applied and listed;
// timeout= is stall='s name from before every backend had it.
var options = append([]storage.Option[*config]{
	{Name: "endpoint", Set: setEndpoint},
	{Name: "region", Set: func(c *config, v string) error { c.minio.Region = v; return nil }},
	{Name: "insecure", Set: setInsecure},
	{Name: "path-style", Set: setPathStyle},
	{Name: "ca-file", Set: setCAFile},
	{Name: "part-size", Set: setPartSize},
	{Name: "credentials", Set: setCredentials},
}, storage.TransferOptions(func(c *config) *storage.Transfer { return &c.s.xfer }, "timeout")...)

// badURL is the error about a malformed s3:// URL: what is wrong, and an
// example of a good one.
func badURL(u *url.URL, format string, a ...any) error {
	return fmt.Errorf("%w %q: %s (e.g. %s)", storage.ErrBadURL, u.String(), fmt.Sprintf(format, a...), example)
}

// configure reads the bucket, prefix and options of u. When an option is
// given twice, the last value counts.
func configure(u *url.URL) (*config, error) {
	if !bucketRE.MatchString(u.Host) {
		return nil, badURL(u, "%q is not a valid bucket name", u.Host)
	}
	c := &config{
		s:     &Storage{bucket: u.Host, endpoint: awsEndpoint, partSize: defaultPartSize, xfer: storage.DefaultTransfer()},
		minio: minio.Options{Secure: true, BucketLookup: minio.BucketLookupAuto},
	}
	if p := strings.Trim(u.Path, "/"); p != "" {
		if storage.CheckKey(p) != nil {
			return nil, badURL(u, "invalid prefix %q", p)
		}
		c.s.prefix = p + "/"
	}
	if err := storage.ApplyOptions(c, u.Query(), options); err != nil {
		return nil, badURL(u, "%v", err)
	}
	return c, nil
}

// transport is minio-go's, trusting the CAs of ca-file= if given, with the
// stall timeout as its wait for response headers.
func (c *config) transport() (*http.Transport, error) {
	tr, err := minio.DefaultTransport(c.minio.Secure)
	if err != nil {
		return nil, err
	}
	if c.roots != nil {
		tr.TLSClientConfig = &tls.Config{RootCAs: c.roots, MinVersion: tls.VersionTLS12}
	}
	tr.ResponseHeaderTimeout = c.s.xfer.Stall
	return tr, nil
}

// setEndpoint takes host or host:port, optionally after http:// (which
// turns TLS off) or https://.
func setEndpoint(c *config, v string) error {
	host := v
	switch {
	case strings.HasPrefix(host, "http://"):
		c.minio.Secure = false
		host = strings.TrimPrefix(host, "http://")
	case strings.HasPrefix(host, "https://"):
		host = strings.TrimPrefix(host, "https://")
	}
	host = strings.TrimSuffix(host, "/")
	if host == "" || strings.ContainsAny(host, "/?#@") {
		return fmt.Errorf("endpoint %q must be host or host:port", v)
	}
	c.s.endpoint = host
	return nil
}

func setInsecure(c *config, v string) error {
	b, err := storage.ParseBool("insecure", v)
	if err != nil {
		return err
	}
	c.minio.Secure = !b
	return nil
}

func setPathStyle(c *config, v string) error {
	b, err := storage.ParseBool("path-style", v)
	if err != nil {
		return err
	}
	c.minio.BucketLookup = minio.BucketLookupDNS
	if b {
		c.minio.BucketLookup = minio.BucketLookupPath
	}
	return nil
}

func setCAFile(c *config, v string) error {
	pool, err := certpool.FromFile(v)
	if err != nil {
		return fmt.Errorf("ca-file: %w", err)
	}
	c.roots = pool
	return nil
}

// setPartSize takes a number of bytes with an optional unit: 8388608,
// 16MiB, 16MB (decimal), 1GiB.
func setPartSize(c *config, v string) (err error) {
	c.s.partSize, err = storage.ParseSize("part-size", v, minPartSize, maxPartSize, 1, "a size from 5MiB to 5GiB, e.g. 16MiB")
	return err
}

// setCredentials takes keys (the default: AWS_ACCESS_KEY_ID and
// AWS_SECRET_ACCESS_KEY, or the shared credentials file) or cloud (the cloud
// identity, which must be asked for: see credentialsFromEnv).
func setCredentials(c *config, v string) error {
	switch v {
	case "keys":
		c.cloud = false
	case "cloud":
		c.cloud = true
	default:
		return fmt.Errorf("credentials=%q: want keys or cloud", v)
	}
	return nil
}
