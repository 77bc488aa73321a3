package azblob_test

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/container"

	"remora.dev/remora/internal/testenv"
	"remora.dev/remora/storage"
	_ "remora.dev/remora/storage/azblob"
	"remora.dev/remora/storage/storagetest"
)

func TestAzblob(t *testing.T) {
	srv := testenv.StartAzurite(t)
	srv.SetEnv(t)
	var n atomic.Int32
	storagetest.Run(t, func(t *testing.T) storage.Storage {
		name := fmt.Sprintf("container%d", n.Add(1))
		srv.CreateContainer(t, name)
		// 4 MiB blocks make the suite's larger objects several blocks.
		s, err := storage.Open(context.Background(), srv.URL(name, "some/prefix")+"&block-size=4MiB", storage.Options{})
		if err != nil {
			t.Fatal(err)
		}
		return s
	})
}

// TestSAS: a container SAS token with the permissions Remora needs passes
// the suite's basic round trip.
func TestSAS(t *testing.T) {
	srv := testenv.StartAzurite(t)
	srv.CreateContainer(t, "sas")
	unsetCredentials(t)
	t.Setenv("AZURE_STORAGE_SAS_TOKEN", "?"+srv.SAS(t, "sas", "racwdl", testenv.AzuriteKey))
	storagetest.Run(t, func(t *testing.T) storage.Storage {
		s, err := storage.Open(context.Background(), srv.URL("sas", "p"), storage.Options{})
		if err != nil {
			t.Fatal(err)
		}
		emptyContainer(t, srv, "sas")
		return s
	})
}

// emptyContainer removes every blob of the container, so each suite case starts empty.
func emptyContainer(t *testing.T, srv *testenv.Azurite, name string) {
	t.Helper()
	ctx := context.Background()
	c := srv.Client(t).ServiceClient().NewContainerClient(name)
	p := c.NewListBlobsFlatPager(nil)
	for p.More() {
		page, err := p.NextPage(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for _, b := range page.Segment.BlobItems {
			if _, err := c.NewBlobClient(*b.Name).Delete(ctx, nil); err != nil {
				t.Fatal(err)
			}
		}
	}
}

// unsetCredentials removes the credential variables for the test's duration.
func unsetCredentials(t *testing.T) {
	for _, k := range []string{"AZURE_STORAGE_KEY", "AZURE_STORAGE_SAS_TOKEN", "AZURE_FEDERATED_TOKEN_FILE"} {
		t.Setenv(k, "")
		os.Unsetenv(k)
	}
}

// blobs lists every blob name in the container, uncommitted ones too.
func blobs(t *testing.T, srv *testenv.Azurite, name string) []string {
	t.Helper()
	var out []string
	p := srv.Client(t).ServiceClient().NewContainerClient(name).NewListBlobsFlatPager(&container.ListBlobsFlatOptions{
		Include: container.ListBlobsInclude{UncommittedBlobs: true},
	})
	for p.More() {
		page, err := p.NextPage(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		for _, b := range page.Segment.BlobItems {
			out = append(out, *b.Name)
		}
	}
	return out
}

// TestBadInputs: each bad input gets one line that names the storage and
// what to fix, never a credential, and nothing is stored.
func TestBadInputs(t *testing.T) {
	srv := testenv.StartAzurite(t)
	srv.CreateContainer(t, "exists")
	wrongKey := base64.StdEncoding.EncodeToString([]byte(strings.Repeat("wrong-key-", 6) + "0000"))
	goodSAS := srv.SAS(t, "exists", "racwdl", testenv.AzuriteKey)
	badSAS := srv.SAS(t, "exists", "racwdl", wrongKey)
	readOnlySAS := srv.SAS(t, "exists", "rl", testenv.AzuriteKey)
	port := testenv.FreePort(t)
	secrets := []string{testenv.AzuriteKey, wrongKey, sig(goodSAS), sig(badSAS), sig(readOnlySAS)}
	for _, tc := range []struct {
		name string
		env  map[string]string
		url  string
		want string // in the error of Check, else of Put
	}{
		{"wrong key", map[string]string{"AZURE_STORAGE_KEY": wrongKey}, srv.URL("exists", "p"), "access denied (AuthorizationFailure): check AZURE_STORAGE_KEY,"},
		{"missing container", map[string]string{"AZURE_STORAGE_KEY": testenv.AzuriteKey}, srv.URL("missing", "p"), `container "missing" does not exist`},
		{"missing container by SAS", map[string]string{"AZURE_STORAGE_SAS_TOKEN": goodSAS}, srv.URL("missing", "p"), `access denied`},
		{"bad SAS", map[string]string{"AZURE_STORAGE_SAS_TOKEN": badSAS}, srv.URL("exists", "p"), "access denied (AuthorizationFailure): check AZURE_STORAGE_SAS_TOKEN,"},
		{"read-only SAS", map[string]string{"AZURE_STORAGE_SAS_TOKEN": readOnlySAS}, srv.URL("exists", "p"), "may read, write, list and delete"},
		{"unknown host", map[string]string{"AZURE_STORAGE_KEY": testenv.AzuriteKey},
			"azblob://devstoreaccount1/exists/p?retries=0&endpoint=http://no-such-host.invalid/devstoreaccount1", "unknown host no-such-host.invalid"},
		{"nothing listening", map[string]string{"AZURE_STORAGE_SAS_TOKEN": goodSAS},
			fmt.Sprintf("azblob://devstoreaccount1/exists/p?retries=0&endpoint=http://127.0.0.1:%d/devstoreaccount1", port), "cannot reach"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			unsetCredentials(t)
			for k, v := range tc.env {
				t.Setenv(k, v)
			}
			ctx := context.Background()
			s, err := storage.Open(ctx, tc.url, storage.Options{})
			if err != nil {
				t.Fatalf("Open: %v", err)
			}
			err = s.Check(ctx)
			if tc.name != "read-only SAS" {
				checkErr(t, "Check", err, tc.want, s.String(), secrets)
			} else if err != nil {
				t.Fatalf("Check of a read-only SAS: %v", err)
			}
			_, err = s.Put(ctx, "k", strings.NewReader("data"))
			checkErr(t, "Put", err, tc.want, s.String(), secrets)
			if got := blobs(t, srv, "exists"); len(got) != 0 {
				t.Fatalf("stored after a failed Put: %v", got)
			}
		})
	}
}

// sig is a SAS token's signature: the secret part.
func sig(token string) string {
	_, after, _ := strings.Cut(token, "sig=")
	v, _, _ := strings.Cut(after, "&")
	return v
}

func checkErr(t *testing.T, op string, err error, want, storage string, secrets []string) {
	t.Helper()
	if err == nil {
		t.Fatalf("%s succeeded, want an error holding %q", op, want)
	}
	msg := err.Error()
	t.Logf("%s: %s", op, msg)
	if !strings.Contains(msg, want) || !strings.Contains(msg, storage) || strings.Contains(msg, "\n") {
		t.Errorf("%s = %q, want one line naming %q and holding %q", op, msg, storage, want)
	}
	for _, s := range secrets {
		if s != "" && strings.Contains(msg, s) {
			t.Errorf("%s error shows a credential: %q", op, msg)
		}
	}
}

// TestCredentials: where credentials come from, and the errors, naming
// variables and never their values, when they are wrong or missing.
func TestCredentials(t *testing.T) {
	const key = "Y3JlZGVudGlhbHMta2V5LXZhbHVl"
	for _, tc := range []struct {
		name  string
		env   map[string]string
		query string
		want  string // "" when Open succeeds
	}{
		{"key", map[string]string{"AZURE_STORAGE_KEY": key}, "", ""},
		{"SAS", map[string]string{"AZURE_STORAGE_SAS_TOKEN": "?sv=2024&sig=abc"}, "", ""},
		{"key_env", map[string]string{"OTHER_KEY": key}, "?key_env=OTHER_KEY", ""},
		{"sas_env over the default key", map[string]string{"AZURE_STORAGE_KEY": key, "OTHER_SAS": "sv=1&sig=x"}, "?sas_env=OTHER_SAS", ""},
		{"nothing", nil, "", "no storage credentials: set AZURE_STORAGE_KEY"},
		{"both", map[string]string{"AZURE_STORAGE_KEY": key, "AZURE_STORAGE_SAS_TOKEN": "sig=x"}, "", "both AZURE_STORAGE_KEY and AZURE_STORAGE_SAS_TOKEN"},
		{"empty key", map[string]string{"AZURE_STORAGE_KEY": ""}, "", "AZURE_STORAGE_KEY is empty"},
		{"key not base64", map[string]string{"AZURE_STORAGE_KEY": "not base64!"}, "", "AZURE_STORAGE_KEY does not hold a storage account key"},
		{"SAS without a signature", map[string]string{"AZURE_STORAGE_SAS_TOKEN": "sv=2024"}, "", "AZURE_STORAGE_SAS_TOKEN does not hold a SAS token"},
		{"key_env unset", nil, "?key_env=OTHER_KEY", "OTHER_KEY is not set"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			unsetCredentials(t)
			for k, v := range tc.env {
				t.Setenv(k, v)
			}
			_, err := storage.Open(context.Background(), "azblob://account/container/p"+tc.query, storage.Options{})
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("Open = %v", err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Fatalf("Open = %v, want an error holding %q", err, tc.want)
			case err != nil && (strings.Contains(err.Error(), key) || strings.Contains(err.Error(), "not base64!")):
				t.Fatalf("error shows a credential: %v", err)
			}
		})
	}
}

func TestOpenBadURLs(t *testing.T) {
	t.Setenv("AZURE_STORAGE_KEY", testenv.AzuriteKey)
	for _, u := range []string{
		"azblob://", "azblob://Acc/container", "azblob://account", "azblob://account/C_ntainer", "azblob://account/a--b",
		"azblob://account/container/a/../b", "azblob://account/container?unknown=1", "azblob://account/container?endpoint=ftp://x",
		"azblob://account/container?endpoint=http://", "azblob://account/container?block-size=100KiB", "azblob://account/container?block-size=5GiB",
		"azblob://account/container?concurrency=0", "azblob://account/container?concurrency=99", "azblob://account/container?retries=21",
		"azblob://account/container?key_env=A&sas_env=B", "azblob://account/container?key_env=no-dashes",
	} {
		_, err := storage.Open(context.Background(), u, storage.Options{})
		if !errors.Is(err, storage.ErrBadURL) {
			t.Errorf("Open(%q) = %v, want ErrBadURL", u, err)
		}
	}
}

func TestString(t *testing.T) {
	t.Setenv("AZURE_STORAGE_KEY", testenv.AzuriteKey)
	for u, want := range map[string]string{
		"azblob://account/container/p?block-size=16MiB":                         "azblob://account/container/p",
		"azblob://account/container/p?endpoint=http://127.0.0.1:10000/account/": "azblob://account/container/p at http://127.0.0.1:10000/account/",
	} {
		s, err := storage.Open(context.Background(), u, storage.Options{})
		if err != nil {
			t.Fatal(err)
		}
		if got := s.String(); got != want {
			t.Errorf("Open(%q).String() = %q, want %q", u, got, want)
		}
	}
}

// TestClock: the storage's clock is the one that stamps its blobs.
func TestClock(t *testing.T) {
	srv := testenv.StartAzurite(t)
	srv.SetEnv(t)
	srv.CreateContainer(t, "clock")
	ctx := context.Background()
	s, err := storage.Open(ctx, srv.URL("clock", ""), storage.Options{})
	if err != nil {
		t.Fatal(err)
	}
	now, err := s.(storage.Clock).Now(ctx)
	if err != nil || now.IsZero() {
		t.Fatalf("Now = %v, %v", now, err)
	}
	if _, err := s.Put(ctx, "x", strings.NewReader("x")); err != nil {
		t.Fatal(err)
	}
	r, err := s.Open(ctx, "x")
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, r)
	r.Close()
}
