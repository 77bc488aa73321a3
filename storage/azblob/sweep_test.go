package azblob_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"slices"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore/streaming"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/container"

	"remora.dev/remora/internal/testenv"
	"remora.dev/remora/storage"
)

// TestSweepUncommitted: the blocks a killed Put staged (a blob with no
// committed content) are removed by Sweep once older than its cutoff, and
// not before; committed blobs, and staged blocks outside the storage's
// prefix or the sweep's, stay.
func TestSweepUncommitted(t *testing.T) {
	srv := testenv.StartAzurite(t)
	srv.CreateContainer(t, "sweep")
	srv.SetEnv(t)
	ctx := context.Background()
	s, err := storage.Open(ctx, srv.URL("sweep", "p"), storage.Options{})
	if err != nil {
		t.Fatal(err)
	}
	sw, ok := s.(storage.Sweeper)
	if !ok {
		t.Fatal("the azblob storage is no storage.Sweeper: the blocks of killed Puts stay for a week")
	}
	if _, err := s.Put(ctx, "a/kept", bytes.NewReader([]byte("kept"))); err != nil {
		t.Fatal(err)
	}
	c := srv.Client(t).ServiceClient().NewContainerClient("sweep")
	for _, name := range []string{"p/a/killed", "p/b/killed", "other/killed"} {
		stage(t, c, name)
	}
	if n, err := sw.Sweep(ctx, "a/", time.Now().Add(-time.Hour)); err != nil || n != 0 {
		t.Fatalf("a sweep of what is younger than its cutoff removed %d: %v", n, err)
	}
	if got, want := uncommittedBlobs(t, c), []string{"other/killed", "p/a/killed", "p/b/killed"}; !slices.Equal(got, want) {
		t.Fatalf("staged blobs %v, want %v", got, want)
	}
	if n, err := sw.Sweep(ctx, "a/", time.Now().Add(time.Hour)); err != nil || n != 1 {
		t.Fatalf("the sweep removed %d, want 1: %v", n, err)
	}
	if got, want := uncommittedBlobs(t, c), []string{"other/killed", "p/b/killed"}; !slices.Equal(got, want) {
		t.Fatalf("after the sweep, staged blobs %v, want %v", got, want)
	}
	var keys []string
	if err := s.List(ctx, "", func(o storage.Object) error { keys = append(keys, o.Key); return nil }); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(keys, []string{"a/kept"}) {
		t.Fatalf("after the sweep the storage lists %v, want [a/kept]", keys)
	}
}

// stage stages a block of the blob name, committing nothing, as a Put
// killed part way does.
func stage(t *testing.T, c *container.Client, name string) {
	t.Helper()
	id := base64.StdEncoding.EncodeToString([]byte("block-0000"))
	body := streaming.NopCloser(bytes.NewReader(bytes.Repeat([]byte("x"), 1024)))
	if _, err := c.NewBlockBlobClient(name).StageBlock(context.Background(), id, body, nil); err != nil {
		t.Fatalf("stage a block of %s: %v", name, err)
	}
}

// uncommittedBlobs names the blobs of the container that have staged blocks
// and no committed content.
func uncommittedBlobs(t *testing.T, c *container.Client) []string {
	t.Helper()
	list := func(include bool) []string {
		var names []string
		p := c.NewListBlobsFlatPager(&container.ListBlobsFlatOptions{Include: container.ListBlobsInclude{UncommittedBlobs: include}})
		for p.More() {
			page, err := p.NextPage(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			for _, b := range page.Segment.BlobItems {
				names = append(names, *b.Name)
			}
		}
		return names
	}
	committed := list(false)
	var out []string
	for _, n := range list(true) {
		if !slices.Contains(committed, n) {
			out = append(out, n)
		}
	}
	slices.Sort(out)
	return out
}
