package gcs

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"os"
	"regexp"
	"strings"

	"google.golang.org/api/option"

	"remora.dev/remora/storage"
)

// Chunk sizes: GCS takes chunks in multiples of 256 KiB; 16 MiB is the
// library's default, which sends a large object in few requests.
const (
	chunkUnit        = 256 << 10
	minChunkSize     = chunkUnit
	maxChunkSize     = 1 << 30
	defaultChunkSize = 16 << 20
)

// Variables the credentials may come from.
const (
	// envJSON holds a service account key (its JSON), as a storage Secret
	// sets it in a pod.
	envJSON = "REMORA_GCS_CREDENTIALS"
	// envFile names a service account key file: Google's own variable.
	envFile = "GOOGLE_APPLICATION_CREDENTIALS"
	// envEmulator would make the library drop authentication silently.
	envEmulator = "STORAGE_EMULATOR_HOST"
)

// example is the URL that errors about a malformed one show.
const example = "gs://bucket/prefix?credentials_file=/secrets/sa.json"

// GCS bucket names: 3-63 characters (up to 222 with dots), lower case,
// digits, dashes, underscores and dots, starting and ending with a letter or
// digit.
var bucketRE = regexp.MustCompile(`^[a-z0-9][a-z0-9._-]{1,220}[a-z0-9]$`)

// config is what a URL sets up before the client is made.
type config struct {
	s         *Storage
	credFile  string // credentials_file=
	credEnv   string // credentials_env=
	ambient   bool   // credentials=ambient
	anonymous bool   // anonymous=true, with endpoint= only
}

// urlOptions are the URL's options, in the order they are applied and listed.
var urlOptions = append([]storage.Option[*config]{
	{Name: "endpoint", Set: setEndpoint},
	{Name: "anonymous", Set: setAnonymous},
	{Name: "credentials_file", Set: func(c *config, v string) error { c.credFile = v; return nil }},
	{Name: "credentials_env", Set: setCredEnv},
	{Name: "credentials", Set: setCredentials},
	{Name: "chunk-size", Set: setChunkSize},
}, storage.TransferOptions(func(c *config) *storage.Transfer { return &c.s.xfer })...)

// badURL is the error about a malformed gs:// URL.
func badURL(u *url.URL, format string, a ...any) error {
	return fmt.Errorf("%w %q: %s (e.g. %s)", storage.ErrBadURL, u.String(), fmt.Sprintf(format, a...), example)
}

// configure reads the bucket, prefix and options of u. When an option is
// given twice, the last value counts.
func configure(u *url.URL) (*config, error) {
	if !bucketRE.MatchString(u.Host) {
		return nil, badURL(u, "%q is not a valid bucket name", u.Host)
	}
	c := &config{s: &Storage{bucket: u.Host, chunkSize: defaultChunkSize, xfer: storage.DefaultTransfer()}}
	if p := strings.Trim(u.Path, "/"); p != "" {
		if storage.CheckKey(p) != nil {
			return nil, badURL(u, "invalid prefix %q", p)
		}
		c.s.prefix = p + "/"
	}
	if err := storage.ApplyOptions(c, u.Query(), urlOptions); err != nil {
		return nil, badURL(u, "%v", err)
	}
	if err := c.consistent(); err != nil {
		return nil, badURL(u, "%v", err)
	}
	return c, nil
}

// consistent refuses options that contradict each other: anonymous access
// is for an emulator only, and takes no credentials.
func (c *config) consistent() error {
	switch {
	case c.anonymous && c.s.endpoint == "":
		return errors.New("anonymous=true is only for an emulator named by endpoint=; Google Cloud Storage itself needs credentials")
	case c.anonymous && (c.credFile != "" || c.credEnv != "" || c.ambient):
		return errors.New("anonymous=true takes no credentials: drop credentials_file=, credentials_env= or credentials=")
	case c.ambient && (c.credFile != "" || c.credEnv != ""):
		return errors.New("credentials=ambient uses the ambient identity: drop credentials_file= and credentials_env=")
	case c.credFile != "" && c.credEnv != "":
		return errors.New("give credentials_file= or credentials_env=, not both")
	}
	return nil
}

// setEndpoint takes the JSON API's base URL, http(s)://host[:port][/path];
// a URL without a path gets /storage/v1/.
func setEndpoint(c *config, v string) error {
	e, err := url.Parse(v)
	if err != nil || e.Scheme != "http" && e.Scheme != "https" || e.Host == "" || e.User != nil || e.RawQuery != "" || e.Fragment != "" {
		return fmt.Errorf("endpoint %q: want http://host:port/storage/v1/ or https://...", v)
	}
	if strings.Trim(e.Path, "/") == "" {
		e.Path = "/storage/v1/"
	}
	if !strings.HasSuffix(e.Path, "/") {
		e.Path += "/"
	}
	c.s.endpoint = e.String()
	return nil
}

func setAnonymous(c *config, v string) (err error) {
	c.anonymous, err = storage.ParseBool("anonymous", v)
	return err
}

var envNameRE = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

func setCredEnv(c *config, v string) error {
	if !envNameRE.MatchString(v) {
		return fmt.Errorf("credentials_env=%q: want the name of an environment variable", v)
	}
	c.credEnv = v
	return nil
}

func setCredentials(c *config, v string) error {
	switch v {
	case "key":
		c.ambient = false
	case "ambient":
		c.ambient = true
	default:
		return fmt.Errorf("credentials=%q: want key or ambient", v)
	}
	return nil
}

// setChunkSize takes a size (16MiB, 8388608), a multiple of 256 KiB.
func setChunkSize(c *config, v string) error {
	n, err := storage.ParseSize("chunk-size", v, minChunkSize, maxChunkSize, chunkUnit, "a multiple of 256KiB from 256KiB to 1GiB, e.g. 16MiB")
	c.s.chunkSize = int(n)
	return err
}

// credentials picks the client's credentials, in this order:
// credentials_file=, credentials_env=, REMORA_GCS_CREDENTIALS,
// GOOGLE_APPLICATION_CREDENTIALS; the ambient identity only when the URL asks
// for it with credentials=ambient, and no authentication only with
// anonymous=true and an endpoint. Nothing falls back silently: in a pod, a
// storage Secret whose key is missing must fail, not turn into the node's
// identity, which may reach every tenant's backups. Errors name variables
// and files, never their contents. It returns the options and where the
// credentials come from, for errors.
func (c *config) credentials() ([]option.ClientOption, string, error) {
	if os.Getenv(envEmulator) != "" {
		return nil, "", fmt.Errorf("%s is set, which would turn authentication off: unset it and name an emulator with endpoint= and anonymous=true", envEmulator)
	}
	switch {
	case c.anonymous:
		return []option.ClientOption{option.WithoutAuthentication()}, "no credentials (anonymous=true)", nil
	case c.ambient:
		if os.Getenv(envJSON) != "" {
			return nil, "", fmt.Errorf("credentials=ambient asks for the ambient identity, but %s is set too: remove it or drop credentials=ambient", envJSON)
		}
		return nil, "the ambient identity (credentials=ambient)", nil
	case c.credFile != "":
		return keyFile(c.credFile, "credentials_file="+c.credFile)
	case c.credEnv != "":
		return keyEnv(c.credEnv)
	case os.Getenv(envJSON) != "":
		return keyEnv(envJSON)
	case os.Getenv(envFile) != "":
		return keyFile(os.Getenv(envFile), envFile+"="+os.Getenv(envFile))
	}
	if _, set := os.LookupEnv(envJSON); set {
		return nil, "", fmt.Errorf("%s is empty: put the service account key (JSON) in it", envJSON)
	}
	return nil, "", fmt.Errorf("no credentials: set %s to a service account key (JSON; in a pod, in the storage Secret) or %s to its file, or add credentials_file=PATH, or credentials=ambient to use the ambient identity (GKE Workload Identity, the metadata server, gcloud's default credentials)", envJSON, envFile)
}

func keyFile(path, from string) ([]option.ClientOption, string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, "", fmt.Errorf("%s: the file does not exist", from)
		}
		var pe *fs.PathError
		if errors.As(err, &pe) {
			err = pe.Err
		}
		return nil, "", fmt.Errorf("%s: %v", from, err)
	}
	return serviceAccount(b, from)
}

func keyEnv(name string) ([]option.ClientOption, string, error) {
	v, set := os.LookupEnv(name)
	if !set || v == "" {
		return nil, "", fmt.Errorf("%s is missing or empty: put the service account key (JSON) in it", name)
	}
	return serviceAccount([]byte(v), name)
}

// serviceAccount checks that b is a service account key and makes it the
// client's credentials. Other kinds of credential configuration (external
// accounts, which may run commands or fetch URLs) are refused: they are for
// credentials=ambient and gcloud's own files.
func serviceAccount(b []byte, from string) ([]option.ClientOption, string, error) {
	var k struct {
		Type        string `json:"type"`
		ClientEmail string `json:"client_email"`
		PrivateKey  string `json:"private_key"`
	}
	if err := json.Unmarshal(b, &k); err != nil {
		return nil, "", fmt.Errorf("%s: not a service account key: the JSON does not parse", from)
	}
	if k.Type != "service_account" || k.ClientEmail == "" || k.PrivateKey == "" {
		return nil, "", fmt.Errorf("%s: not a service account key (want JSON with type service_account, client_email and private_key)", from)
	}
	return []option.ClientOption{option.WithAuthCredentialsJSON(option.ServiceAccount, b)}, from + " (" + k.ClientEmail + ")", nil
}
