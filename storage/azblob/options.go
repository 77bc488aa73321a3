package azblob

import (
	"fmt"
	"net/url"
	"regexp"
	"strings"

	"remora.dev/remora/storage"
)

// Limits of block blobs (Azure documents them) and the defaults.
const (
	minBlockSize       = 1 << 20
	maxBlockSize       = 4000 << 20
	maxBlocks          = 50000
	defaultBlockSize   = 8 << 20
	defaultConcurrency = 2
	maxConcurrency     = 16
)

// example is the URL that errors about a malformed one show.
const example = "azblob://account/container/prefix?block-size=8MiB&concurrency=2"

var (
	// Storage account names: 3 to 24 lowercase letters and digits.
	accountRE = regexp.MustCompile(`^[a-z0-9]{3,24}$`)
	// Container names: 3 to 63 lowercase letters, digits and dashes, starting
	// and ending with a letter or digit (and no two dashes in a row).
	containerRE = regexp.MustCompile(`^[a-z0-9][a-z0-9-]{1,61}[a-z0-9]$`)
	// Names of environment variables that options may point to.
	envNameRE = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)
)

// config is what a URL sets up before the client is made.
type config struct {
	s      *Storage
	keyEnv string // key_env=: the variable holding the account key
	sasEnv string // sas_env=: the variable holding a SAS token
}

// options are the URL's options, in the order they are applied and listed.
var options = append([]storage.Option[*config]{
	{Name: "endpoint", Set: setEndpoint},
	{Name: "key_env", Set: func(c *config, v string) error { return setEnvName(&c.keyEnv, "key_env", v) }},
	{Name: "sas_env", Set: func(c *config, v string) error { return setEnvName(&c.sasEnv, "sas_env", v) }},
	{Name: "block-size", Set: setBlockSize},
	{Name: "concurrency", Set: setConcurrency},
}, storage.TransferOptions(func(c *config) *storage.Transfer { return &c.s.xfer })...)

// badURL is the error about a malformed azblob:// URL: what is wrong, and an
// example of a good one.
func badURL(u *url.URL, format string, a ...any) error {
	return fmt.Errorf("%w %q: %s (e.g. %s)", storage.ErrBadURL, u.String(), fmt.Sprintf(format, a...), example)
}

// configure reads the account, container, prefix and options of u. When an
// option is given twice, the last value counts.
func configure(u *url.URL) (*config, error) {
	if !accountRE.MatchString(u.Host) {
		return nil, badURL(u, "%q is not a valid storage account name (3 to 24 lowercase letters and digits)", u.Host)
	}
	cont, prefix, _ := strings.Cut(strings.TrimPrefix(u.Path, "/"), "/")
	if !containerRE.MatchString(cont) || strings.Contains(cont, "--") {
		return nil, badURL(u, "%q is not a valid container name", cont)
	}
	c := &config{
		s: &Storage{account: u.Host, container: cont, blockSize: defaultBlockSize, concurrency: defaultConcurrency,
			endpoint: "https://" + u.Host + ".blob.core.windows.net/", xfer: storage.DefaultTransfer()},
	}
	if p := strings.Trim(prefix, "/"); p != "" {
		if storage.CheckKey(p) != nil {
			return nil, badURL(u, "invalid prefix %q", p)
		}
		c.s.prefix = p + "/"
	}
	if err := storage.ApplyOptions(c, u.Query(), options); err != nil {
		return nil, badURL(u, "%v", err)
	}
	if c.keyEnv != "" && c.sasEnv != "" {
		return nil, badURL(u, "key_env and sas_env are both given: name one variable, the account key's or the SAS token's")
	}
	return c, nil
}

// setEndpoint takes the blob service URL, http:// or https://, with the
// account in the path for an emulator (http://127.0.0.1:10000/devstoreaccount1).
func setEndpoint(c *config, v string) error {
	e, err := url.Parse(v)
	if err != nil || (e.Scheme != "http" && e.Scheme != "https") || e.Host == "" || e.User != nil || e.RawQuery != "" || e.Fragment != "" {
		return fmt.Errorf("endpoint %q must be the blob service's URL, http(s)://host[:port][/account]", storage.RedactURL(v))
	}
	c.s.endpoint = strings.TrimSuffix(e.String(), "/") + "/"
	c.s.custom = true
	return nil
}

func setEnvName(dst *string, name, v string) error {
	if !envNameRE.MatchString(v) {
		return fmt.Errorf("%s=%q: want the name of an environment variable", name, v)
	}
	*dst = v
	return nil
}

// setBlockSize takes a number of bytes with an optional unit: 8388608,
// 16MiB, 16MB (decimal), 1GiB.
func setBlockSize(c *config, v string) (err error) {
	c.s.blockSize, err = storage.ParseSize("block-size", v, minBlockSize, maxBlockSize, 1, "a size from 1MiB to 4000MiB, e.g. 16MiB")
	return err
}

func setConcurrency(c *config, v string) (err error) {
	c.s.concurrency, err = storage.ParseInt("concurrency", v, 1, maxConcurrency)
	return err
}
