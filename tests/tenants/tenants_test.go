package tenants

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/minio/minio-go/v7"

	"remora.dev/remora/internal/testenv"
	"remora.dev/remora/internal/testenv/clitest"
	"remora.dev/remora/storage"
	_ "remora.dev/remora/storage/s3"
)

// TestNamespaceKeys: two namespaces share a bucket and the chart's storage
// URL, each with its own keys under the README's bucket policy. Each backs up,
// lists and restores its own backups; the shop's keys can neither list, read,
// restore, overwrite nor delete the web's backups, which the keys the README
// once shared across namespaces could all do.
func TestNamespaceKeys(t *testing.T) {
	s3 := testenv.StartS3WithUsers(t)
	s3.MakeBucket(t, "backups")
	shop, web := s3.CreateUser(t, "shop-backup"), s3.CreateUser(t, "web-backup")
	s3.SetBucketPolicy(t, "backups", bucketPolicy(t, map[string]string{"shop": shop.AccessKey, "web": web.AccessKey}))

	src := filepath.Join(t.TempDir(), "data")
	if err := os.MkdirAll(src, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(src, "orders.csv"), []byte("1,shop\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	// No region=: the bucket's region is asked for, as the policy allows.
	url := fmt.Sprintf("s3://backups/remora?endpoint=%s&insecure=true", s3.Endpoint)
	env := func(keys testenv.S3User, namespace string) []string {
		return append(keys.Env(), "REMORA_STORAGE="+url, "REMORA_DRIVER=files", "REMORA_PATHS="+src,
			"REMORA_NAMESPACE="+namespace, "REMORA_WORKLOAD=app-0")
	}

	remora.Must(t, env(web, "web"), "backup")
	webID := clitest.List(t, remora, env(web, "web"))[0].ID
	remora.Must(t, env(shop, "shop"), "backup")
	if n := len(clitest.List(t, remora, env(shop, "shop"))); n != 1 {
		t.Fatalf("shop lists %d backups, want 1", n)
	}
	into := t.TempDir()
	remora.Must(t, env(shop, "shop"), "restore", "--latest", "--into", into)
	if b, err := os.ReadFile(filepath.Join(into, src, "orders.csv")); err != nil || string(b) != "1,shop\n" {
		t.Fatalf("restored file: %q, %v", b, err)
	}

	for _, args := range [][]string{
		{"list"}, {"verify"}, {"verify", webID}, {"restore", "--latest", "--into", t.TempDir()},
		{"restore", webID, "--into", t.TempDir()}, {"backup"},
	} {
		r := remora.Run(t, env(shop, "web"), args...)
		if r.Code == 0 || !strings.Contains(r.Stderr, "access denied") {
			t.Errorf("remora %s of web's backups with shop's keys: %s", strings.Join(args, " "), r)
		}
	}
	storageDenied(t, s3, url, shop, "web/app-0/files/"+webID+"/manifest.json")

	if items := clitest.List(t, remora, env(web, "web")); len(items) != 1 || items[0].ID != webID {
		t.Fatalf("web's backups after shop's attempts: %+v", items)
	}
	// Shared keys, as the README once gave every namespace, reach it all.
	rootKeys := testenv.S3User{AccessKey: s3.AccessKey, SecretKey: s3.SecretKey}
	if n := len(clitest.List(t, remora, env(rootKeys, "web"))); n != 1 {
		t.Fatalf("shared keys list %d of web's backups, want 1", n)
	}
}

// storageDenied checks, through the storage package, that keys can neither
// read, overwrite nor delete key, nor list the whole storage, and that the
// object is left as it was.
func storageDenied(t *testing.T, s3 *testenv.S3, url string, keys testenv.S3User, key string) {
	t.Setenv("AWS_ACCESS_KEY_ID", keys.AccessKey)
	t.Setenv("AWS_SECRET_ACCESS_KEY", keys.SecretKey)
	ctx := context.Background()
	root := s3.Client(t)
	before, err := root.StatObject(ctx, "backups", "remora/"+key, minio.StatObjectOptions{})
	if err != nil {
		t.Fatal(err)
	}
	st, err := storage.Open(ctx, url, storage.Options{})
	if err != nil {
		t.Fatal(err)
	}
	_, openErr := st.Open(ctx, key)
	_, putErr := st.Put(ctx, key, strings.NewReader("{}"))
	for what, err := range map[string]error{
		"read " + key: openErr, "overwrite " + key: putErr, "delete " + key: st.Delete(ctx, key),
		"list the whole storage": st.List(ctx, "", func(storage.Object) error { return nil }),
	} {
		if err == nil || !strings.Contains(err.Error(), "access denied") {
			t.Errorf("%s: %v, want access denied", what, err)
		}
	}
	after, err := root.StatObject(ctx, "backups", "remora/"+key, minio.StatObjectOptions{})
	if err != nil || after.ETag != before.ETag {
		t.Errorf("%s after the attempts: %+v, %v; before: %+v", key, after, err, before)
	}
}

// bucketPolicy is the README's bucket policy, for each namespace and its
// user's access key, in one document.
func bucketPolicy(t *testing.T, users map[string]string) string {
	t.Helper()
	example := readmePolicy(t, `"Principal"`)
	var all struct {
		Version   string
		Statement []json.RawMessage
	}
	for ns, access := range users {
		p := strings.ReplaceAll(strings.ReplaceAll(example, "/shop/", "/"+ns+"/"), `"shop-backup"`, `"`+access+`"`)
		var doc struct {
			Version   string
			Statement []json.RawMessage
		}
		if err := json.Unmarshal([]byte(p), &doc); err != nil {
			t.Fatalf("README's bucket policy: %v", err)
		}
		all.Version = doc.Version
		all.Statement = append(all.Statement, doc.Statement...)
	}
	b, err := json.Marshal(all)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// readmePolicy is the JSON block of README's Tenants section that holds
// marker. Every JSON block there must parse.
func readmePolicy(t *testing.T, marker string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(testenv.RepoRoot(), "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	_, section, ok := strings.Cut(string(b), "\n## Tenants\n")
	if !ok {
		t.Fatal("README has no Tenants section")
	}
	section, _, _ = strings.Cut(section, "\n## ")
	found := ""
	blocks := strings.Split(section, "```json\n")[1:]
	for _, blk := range blocks {
		blk, _, _ = strings.Cut(blk, "```")
		if !json.Valid([]byte(blk)) {
			t.Fatalf("README's Tenants section has a JSON block that does not parse:\n%s", blk)
		}
		if strings.Contains(blk, marker) {
			found = blk
		}
	}
	if found == "" {
		t.Fatalf("README's Tenants section has no JSON block with %s", marker)
	}
	return found
}
