// Package storagetest is the conformance suite every storage.Storage passes.
package storagetest

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"io"
	"io/fs"
	"strings"
	"testing"

	"remora.dev/remora/storage"
)

// Run checks the storage contract against a fresh, empty storage from newFn.
func Run(t *testing.T, newFn func(t *testing.T) storage.Storage) {
	for _, c := range []struct {
		name  string
		check func(t *testing.T, s storage.Storage)
	}{
		{"PutOpenStatListDelete", putOpenStatListDelete},
		{"Overwrite", overwrite},
		{"LargeStream", largeStream},
		{"FailedPutLeavesNothing", failedPutLeavesNothing},
		{"CanceledPut", canceledPut},
		{"BadKeys", badKeys},
	} {
		t.Run(c.name, func(t *testing.T) { c.check(t, newFn(t)) })
	}
}

// putOpenStatListDelete: what Put stores, Open, Stat and List see; Delete
// removes it, and a missing key gives fs.ErrNotExist.
func putOpenStatListDelete(t *testing.T, s storage.Storage) {
	ctx := context.Background()
	if err := s.Check(ctx); err != nil {
		t.Fatalf("Check: %v", err)
	}
	want := map[string][]byte{
		"a/b/one":   []byte("hello"),
		"a/b/two":   {},
		"a/c/three": bytes.Repeat([]byte("x"), 1000),
		"z":         []byte("zz"),
	}
	for k, v := range want {
		n, err := s.Put(ctx, k, bytes.NewReader(v))
		if err != nil || n != int64(len(v)) {
			t.Fatalf("Put %s: n=%d err=%v", k, n, err)
		}
	}
	for k, v := range want {
		if got := get(t, s, k); !bytes.Equal(got, v) {
			t.Errorf("Open %s: got %d bytes, want %d", k, len(got), len(v))
		}
		o, err := s.Stat(ctx, k)
		if err != nil || o.Size != int64(len(v)) || o.Key != k || o.ModTime.IsZero() {
			t.Errorf("Stat %s: %+v %v", k, o, err)
		}
	}
	if got := keys(t, s, "a/"); strings.Join(got, ",") != "a/b/one,a/b/two,a/c/three" {
		t.Errorf("List a/: %v", got)
	}
	if got := keys(t, s, "a/b/t"); strings.Join(got, ",") != "a/b/two" {
		t.Errorf("List a/b/t: %v", got)
	}
	if got := keys(t, s, ""); len(got) != 4 {
		t.Errorf("List all: %v", got)
	}
	if got := keys(t, s, "nope/"); len(got) != 0 {
		t.Errorf("List nope/: %v", got)
	}
	if err := s.Delete(ctx, "a/b/one"); err != nil {
		t.Fatal(err)
	}
	if err := s.Delete(ctx, "a/b/one"); err != nil {
		t.Errorf("Delete of a missing key: %v", err)
	}
	if _, err := s.Open(ctx, "a/b/one"); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("Open deleted: %v, want fs.ErrNotExist", err)
	}
	if _, err := s.Stat(ctx, "a/b/one"); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("Stat deleted: %v, want fs.ErrNotExist", err)
	}
}

// overwrite: a second Put replaces the object.
func overwrite(t *testing.T, s storage.Storage) {
	put(t, s, "k", []byte("first"))
	put(t, s, "k", []byte("second"))
	if got := get(t, s, "k"); string(got) != "second" {
		t.Errorf("got %q", got)
	}
}

// largeStream: a large object of unknown length goes through whole.
func largeStream(t *testing.T, s storage.Storage) {
	ctx := context.Background()
	// Larger than several parts of the smallest part size, of a length
	// that is no multiple of it, from a reader of unknown length.
	data := make([]byte, 23<<20+12345)
	rand.Read(data)
	n, err := s.Put(ctx, "big/object", io.MultiReader(bytes.NewReader(data[:1000]), bytes.NewReader(data[1000:])))
	if err != nil || n != int64(len(data)) {
		t.Fatalf("Put: n=%d err=%v", n, err)
	}
	if got := get(t, s, "big/object"); !bytes.Equal(got, data) {
		t.Fatalf("read back %d bytes, differ from the %d written", len(got), len(data))
	}
}

// failedPutLeavesNothing: a Put whose reader fails returns its error and
// leaves nothing new, and an overwritten object unchanged.
func failedPutLeavesNothing(t *testing.T, s storage.Storage) {
	ctx := context.Background()
	boom := errors.New("boom")
	for _, size := range []int{0, 100, 7 << 20, 21 << 20} {
		r := io.MultiReader(io.LimitReader(rand.Reader, int64(size)), errReader{boom})
		if _, err := s.Put(ctx, "partial", r); !errors.Is(err, boom) {
			t.Fatalf("Put after %d bytes: err=%v, want the reader's error", size, err)
		}
		if got := keys(t, s, ""); len(got) != 0 {
			t.Fatalf("after a failed Put of %d bytes, List shows %v", size, got)
		}
	}
	put(t, s, "kept", []byte("old"))
	if _, err := s.Put(ctx, "kept", io.MultiReader(io.LimitReader(rand.Reader, 9<<20), errReader{boom})); !errors.Is(err, boom) {
		t.Fatal(err)
	}
	if got := get(t, s, "kept"); string(got) != "old" {
		t.Fatalf("a failed overwrite changed the object: %q", got)
	}
}

// canceledPut: a Put whose context ends part way stores nothing.
func canceledPut(t *testing.T, s storage.Storage) {
	ctx, cancel := context.WithCancel(context.Background())
	r := &cancelAfter{r: rand.Reader, n: 6 << 20, cancel: cancel}
	if _, err := s.Put(ctx, "c", r); err == nil {
		t.Fatal("Put with a canceled context succeeded")
	}
	if got := keys(t, s, ""); len(got) != 0 {
		t.Fatalf("after a canceled Put, List shows %v", got)
	}
}

// badKeys: keys that are not clean relative paths are refused.
func badKeys(t *testing.T, s storage.Storage) {
	ctx := context.Background()
	for _, k := range []string{"", "/abs", "a/../b", "a//b", "dir/", "."} {
		if _, err := s.Put(ctx, k, strings.NewReader("x")); err == nil {
			t.Errorf("Put %q succeeded", k)
		}
	}
}

type errReader struct{ err error }

func (e errReader) Read([]byte) (int, error) { return 0, e.err }

// cancelAfter cancels its context once n bytes have been read, then keeps
// returning data.
type cancelAfter struct {
	r      io.Reader
	n      int
	cancel func()
}

func (c *cancelAfter) Read(p []byte) (int, error) {
	if c.n <= 0 {
		c.cancel()
	}
	n, err := c.r.Read(p)
	c.n -= n
	return n, err
}

func put(t *testing.T, s storage.Storage, key string, data []byte) {
	t.Helper()
	if _, err := s.Put(context.Background(), key, bytes.NewReader(data)); err != nil {
		t.Fatalf("Put %s: %v", key, err)
	}
}

func get(t *testing.T, s storage.Storage, key string) []byte {
	t.Helper()
	r, err := s.Open(context.Background(), key)
	if err != nil {
		t.Fatalf("Open %s: %v", key, err)
	}
	defer r.Close()
	b, err := io.ReadAll(r)
	if err != nil {
		t.Fatalf("read %s: %v", key, err)
	}
	return b
}

func keys(t *testing.T, s storage.Storage, prefix string) []string {
	t.Helper()
	var out []string
	if err := s.List(context.Background(), prefix, func(o storage.Object) error {
		out = append(out, o.Key)
		return nil
	}); err != nil {
		t.Fatalf("List %q: %v", prefix, err)
	}
	return out
}
