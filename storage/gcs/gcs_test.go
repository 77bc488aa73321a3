package gcs_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"remora.dev/remora/internal/testenv"
	"remora.dev/remora/storage"
	_ "remora.dev/remora/storage/gcs"
	"remora.dev/remora/storage/storagetest"
)

func TestGCS(t *testing.T) {
	srv := testenv.StartGCS(t)
	var n atomic.Int32
	storagetest.Run(t, func(t *testing.T) storage.Storage {
		bucket := fmt.Sprintf("bucket%d", n.Add(1))
		srv.MakeBucket(t, bucket)
		// chunk-size 4MiB sends the suite's larger objects in several chunks.
		s, err := storage.Open(context.Background(), srv.URL(bucket, "some/prefix")+"&chunk-size=4MiB", storage.Options{})
		if err != nil {
			t.Fatal(err)
		}
		return s
	})
}

func TestOpenBadURLs(t *testing.T) {
	t.Setenv("REMORA_GCS_CREDENTIALS", "")
	t.Setenv("GOOGLE_APPLICATION_CREDENTIALS", "")
	for _, u := range []string{
		"gs://", "gs://B_ad/p", "gs://ab/p", "gs://bucket/a/../b", "gs://bucket/p?unknown=1",
		"gs://bucket/p?anonymous=true", // no endpoint: real GCS is never used unauthenticated
		"gs://bucket/p?anonymous=maybe&endpoint=http://h/",
		"gs://bucket/p?endpoint=ftp://h/", "gs://bucket/p?endpoint=h:1", "gs://bucket/p?endpoint=http://u:p@h/",
		"gs://bucket/p?endpoint=http://h/&anonymous=true&credentials_file=/k.json",
		"gs://bucket/p?credentials_file=/a.json&credentials_env=K", "gs://bucket/p?credentials=ambient&credentials_env=K",
		"gs://bucket/p?credentials=node", "gs://bucket/p?credentials_env=1BAD",
		"gs://bucket/p?chunk-size=100KiB", "gs://bucket/p?chunk-size=1000000", "gs://bucket/p?chunk-size=2GiB",
		"gs://bucket/p?retries=21", "gs://bucket/p?retries=x",
	} {
		_, err := storage.Open(context.Background(), u, storage.Options{})
		if !errors.Is(err, storage.ErrBadURL) {
			t.Errorf("Open(%q) = %v, want ErrBadURL", u, err)
		}
	}
}

func TestString(t *testing.T) {
	for u, want := range map[string]string{
		"gs://bucket/p?endpoint=http://127.0.0.1:1&anonymous=true": "gs://bucket/p at http://127.0.0.1:1/storage/v1/",
		"gs://bucket/p?endpoint=http://h:1/x&anonymous=true":       "gs://bucket/p at http://h:1/x/",
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

// serviceAccountKey writes a service account key whose token endpoint is
// tokenURI, and returns its JSON and the file's path. Its private key ID is
// the canary, which no error may show.
func serviceAccountKey(t *testing.T, tokenURI string) (string, string) {
	t.Helper()
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		t.Fatal(err)
	}
	b, err := json.Marshal(map[string]string{
		"type": "service_account", "project_id": "test", "private_key_id": testenv.Canary,
		"private_key":  string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})),
		"client_email": "backup@test.iam.gserviceaccount.com", "client_id": "1", "token_uri": tokenURI,
	})
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(t.TempDir(), "sa.json")
	if err := os.WriteFile(p, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return string(b), p
}

// refusingTokenServer answers every token request as Google's does a key
// that was deleted.
func refusingTokenServer(t *testing.T) string {
	t.Helper()
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusBadRequest)
		io.WriteString(w, `{"error":"invalid_grant","error_description":"Invalid JWT Signature."}`)
	}))
	t.Cleanup(ts.Close)
	return ts.URL + "/token"
}

// TestBadInputs: each mistake an operator can make gets one line that says
// what to fix, names the storage, shows no credential, and stores nothing.
func TestBadInputs(t *testing.T) {
	srv := testenv.StartGCS(t)
	srv.MakeBucket(t, "exists")
	ctx := context.Background()
	keyJSON, keyPath := serviceAccountKey(t, refusingTokenServer(t))
	notJSON := filepath.Join(t.TempDir(), "bad.json")
	if err := os.WriteFile(notJSON, []byte("not json "+testenv.Canary), 0o600); err != nil {
		t.Fatal(err)
	}
	withKey := fmt.Sprintf("gs://exists/p?endpoint=%s", srv.Endpoint())
	for _, tc := range []struct {
		name string
		url  string
		env  map[string]string
		want string // in the error of Open, else of Check and of Put
	}{
		{"missing bucket", srv.URL("missing", "p"), nil, `bucket "missing" does not exist`},
		{"unknown host", "gs://exists/p?endpoint=http://no-such-host.invalid/&anonymous=true&retries=0", nil, "cannot reach http://no-such-host.invalid/storage/v1/"},
		{"nothing listening", fmt.Sprintf("gs://exists/p?endpoint=http://127.0.0.1:%d/&anonymous=true&retries=0", testenv.FreePort(t)), nil, "cannot reach"},
		{"no credentials", "gs://exists/p", nil, "no credentials: set REMORA_GCS_CREDENTIALS"},
		{"credentials file missing", "gs://exists/p?credentials_file=/nonexistent/sa.json", nil, "credentials_file=/nonexistent/sa.json: the file does not exist"},
		{"credentials file not JSON", "gs://exists/p?credentials_file=" + notJSON, nil, "not a service account key: the JSON does not parse"},
		{"GOOGLE_APPLICATION_CREDENTIALS missing", "gs://exists/p", map[string]string{"GOOGLE_APPLICATION_CREDENTIALS": "/nonexistent/sa.json"}, "GOOGLE_APPLICATION_CREDENTIALS=/nonexistent/sa.json: the file does not exist"},
		{"credentials_env empty", "gs://exists/p?credentials_env=OTHER_KEY", map[string]string{"OTHER_KEY": ""}, "OTHER_KEY is missing or empty"},
		{"emulator variable", srv.URL("exists", "p"), map[string]string{"STORAGE_EMULATOR_HOST": srv.Addr}, "STORAGE_EMULATOR_HOST is set"},
		{"refused key file", withKey + "&credentials_file=" + keyPath + "&retries=0", nil, "the credentials were refused"},
		{"refused key variable", withKey + "&retries=0", map[string]string{"REMORA_GCS_CREDENTIALS": keyJSON}, "check REMORA_GCS_CREDENTIALS (backup@test.iam.gserviceaccount.com)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for _, k := range []string{"REMORA_GCS_CREDENTIALS", "GOOGLE_APPLICATION_CREDENTIALS", "STORAGE_EMULATOR_HOST"} {
				t.Setenv(k, "")
				os.Unsetenv(k)
			}
			for k, v := range tc.env {
				t.Setenv(k, v)
			}
			s, err := storage.Open(ctx, tc.url, storage.Options{})
			if err != nil {
				checkErr(t, "Open", err, tc.want)
				return
			}
			checkErr(t, "Check", s.Check(ctx), tc.want)
			_, err = s.Put(ctx, "x/y", strings.NewReader("data"))
			checkErr(t, "Put", err, tc.want)
			if got := objects(t, srv); len(got) != 0 {
				t.Errorf("stored %v", got)
			}
		})
	}
}

func checkErr(t *testing.T, op string, err error, want string) {
	t.Helper()
	if err == nil || !strings.Contains(err.Error(), want) || strings.Contains(err.Error(), "\n") {
		t.Fatalf("%s = %v, want one line with %q", op, err, want)
	}
	if strings.Contains(err.Error(), testenv.Canary) || strings.Contains(err.Error(), "PRIVATE KEY") {
		t.Fatalf("%s error shows a credential: %v", op, err)
	}
	if !strings.Contains(err.Error(), "gs://") {
		t.Errorf("%s error does not name the storage: %v", op, err)
	}
	t.Logf("%s: %v", op, err)
}

// objects lists every object the server holds, in every bucket.
func objects(t *testing.T, srv *testenv.GCS) []string {
	t.Helper()
	var out []string
	filepath.WalkDir(srv.Dir, func(p string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() && !strings.HasSuffix(p, ".bucketMetadata") {
			out = append(out, p)
		}
		return nil
	})
	return out
}

// TestResumeDownload: a download whose connection breaks part way goes on
// from where it broke and yields the object whole.
func TestResumeDownload(t *testing.T) {
	srv := testenv.StartGCS(t)
	srv.MakeBucket(t, "resume")
	proxy := testenv.StartFaultProxy(t, srv.Addr)
	ctx := context.Background()
	u := fmt.Sprintf("gs://resume/p?endpoint=http://%s/storage/v1/&anonymous=true", proxy.Endpoint)
	s, err := storage.Open(ctx, u, storage.Options{})
	if err != nil {
		t.Fatal(err)
	}
	data := make([]byte, 5<<20+123)
	rand.Read(data)
	if _, err := s.Put(ctx, "big", bytes.NewReader(data)); err != nil {
		t.Fatal(err)
	}
	var gets atomic.Int32
	proxy.Set(func(r *http.Request, n int) testenv.Fault {
		if r.Method == http.MethodGet && r.URL.Query().Get("alt") == "media" && gets.Add(1) <= 2 {
			return testenv.CutResponse // the first two answers break after 256 KiB
		}
		return testenv.Pass
	})
	r, err := s.Open(ctx, "big")
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	h := sha256.New()
	if _, err := io.Copy(h, r); err != nil {
		t.Fatalf("read through broken connections: %v (injected %v)", err, proxy.Injected())
	}
	if want := sha256.Sum256(data); !bytes.Equal(h.Sum(nil), want[:]) {
		t.Fatal("the object read back differs")
	}
	if n := proxy.Injected()[testenv.CutResponse]; n != 2 {
		t.Fatalf("%d responses cut, want 2", n)
	}
}

// TestStalledDownload: a download whose server stops sending part way is
// given up after the stall time and resumes from where it stopped, instead
// of waiting forever.
func TestStalledDownload(t *testing.T) {
	srv := testenv.StartGCS(t)
	srv.MakeBucket(t, "stall")
	proxy := testenv.StartFaultProxy(t, srv.Addr)
	ctx := context.Background()
	var logs bytes.Buffer
	u := fmt.Sprintf("gs://stall/p?stall=1s&endpoint=http://%s/storage/v1/&anonymous=true", proxy.Endpoint)
	s, err := storage.Open(ctx, u, storage.Options{Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	data := make([]byte, 3<<20+123)
	rand.Read(data)
	if _, err := s.Put(ctx, "big", bytes.NewReader(data)); err != nil {
		t.Fatal(err)
	}
	var gets atomic.Int32
	proxy.Set(func(r *http.Request, n int) testenv.Fault {
		if r.Method == http.MethodGet && r.URL.Query().Get("alt") == "media" && gets.Add(1) == 1 {
			return testenv.StallResponse
		}
		return testenv.Pass
	})
	r, err := s.Open(ctx, "big")
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	got, err := testenv.ReadAllOrHang(t, r)
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("read %d bytes (%v), want the %d written", len(got), err, len(data))
	}
	if n := proxy.Injected()[testenv.StallResponse]; n != 1 || !strings.Contains(logs.String(), "storage download broke, resuming") {
		t.Fatalf("%d stalls injected; log:\n%s", n, logs.String())
	}
}
