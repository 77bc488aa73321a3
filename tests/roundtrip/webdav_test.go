package roundtrip

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"remora.dev/remora/internal/testenv"
)

// TestWebDAVRoundTrip backs a tree up to a WebDAV server over HTTPS, verifies
// and restores it; a wrong password fails with one line; the password shows
// in nothing remora prints or stores.
func TestWebDAVRoundTrip(t *testing.T) {
	t.Parallel()
	dav := testenv.StartWebDAV(t)
	coll := dav.MakeCollection(t, "backups")
	src := filepath.Join(t.TempDir(), "data")
	makeTree(t, src)
	want := describeTree(t, src)
	env := append(dav.Env(), "REMORA_STORAGE="+dav.TLSURL(coll), "REMORA_DRIVER=files", "REMORA_PATHS="+src,
		"REMORA_NAMESPACE=shop", "REMORA_WORKLOAD=app-0")

	bad := append(append([]string{}, env...), "REMORA_WEBDAV_PASSWORD=wrong-"+testenv.Canary)
	r := remora.Run(t, bad, "backup")
	if r.Code == 0 || !strings.Contains(r.Stderr, "login refused (401 Unauthorized)") {
		t.Fatalf("backup with a wrong password: %s", r)
	}
	testenv.NoCanary(t, "backup with a wrong password", r.Stdout+r.Stderr)

	for _, args := range [][]string{{"backup"}, {"verify"}, {"list"}} {
		r := remora.Must(t, env, args...)
		testenv.NoCanary(t, args[0], r.Stdout+r.Stderr)
	}
	into := filepath.Join(t.TempDir(), "restored")
	remora.Must(t, env, "restore", "--latest", "--into", into)
	sameTree(t, "restore --into from WebDAV", want, describeTree(t, filepath.Join(into, strings.TrimPrefix(src, "/"))))
	for _, f := range testenv.FilesUnder(filepath.Join(dav.Dir, coll)) {
		if strings.Contains(f, ".remora-tmp-") {
			t.Errorf("temporary file left on the server: %s", f)
		}
		if b, err := os.ReadFile(f); err == nil {
			testenv.NoCanary(t, f, string(b))
		}
	}
}
