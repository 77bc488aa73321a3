package files

import (
	"archive/tar"
	"bytes"
	"context"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"remora.dev/remora/drivers"
)

// hookWriter calls fn once, after the first n bytes have passed.
type hookWriter struct {
	w  io.Writer
	n  int
	fn func()
}

func (h *hookWriter) Write(p []byte) (int, error) {
	h.n -= len(p)
	if h.fn != nil && h.n <= 0 {
		h.fn()
		h.fn = nil
	}
	return h.w.Write(p)
}

// TestChangingFilesAreReported: files that vanish or shrink during the dump
// are reported, not fatal, and the archive stays valid.
func TestChangingFilesAreReported(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "a"), bytes.Repeat([]byte("a"), 1<<20), 0o644)
	os.WriteFile(filepath.Join(dir, "b"), bytes.Repeat([]byte("b"), 1<<20), 0o644)
	os.WriteFile(filepath.Join(dir, "c"), []byte("c"), 0o644)
	d, err := New([]string{dir})
	if err != nil {
		t.Fatal(err)
	}
	var warnings []string
	ctx := drivers.WithWarn(context.Background(), func(m string) { warnings = append(warnings, m) })
	var out bytes.Buffer
	w := &hookWriter{w: &out, n: 1<<20 + 300<<10, fn: func() {
		os.Truncate(filepath.Join(dir, "b"), 100)
		os.Remove(filepath.Join(dir, "c"))
	}}
	if err := d.Dump(ctx, d.Object(), w); err != nil {
		t.Fatal(err)
	}
	joined := strings.Join(warnings, "\n")
	if !strings.Contains(joined, "/b shrank") || !strings.Contains(joined, "/c vanished") {
		t.Fatalf("warnings: %q", warnings)
	}
	tr := tar.NewReader(&out)
	n := 0
	for {
		_, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("archive: %v", err)
		}
		n++
	}
	if n != 3 { // the directory, a, b
		t.Fatalf("archive holds %d entries", n)
	}
}

// TestRestoreStaysInside: an archive that names a path outside the
// destination is refused, even from a backup of /.
func TestRestoreStaysInside(t *testing.T) {
	all := drivers.Object{Name: "files.tar", Kind: drivers.KindFiles, Meta: map[string]string{"paths": "/"}}
	for _, name := range []string{"../escape", "a/../../escape"} {
		var b bytes.Buffer
		tw := tar.NewWriter(&b)
		tw.WriteHeader(&tar.Header{Name: name, Mode: 0o644, Size: 1, Typeflag: tar.TypeReg})
		tw.Write([]byte("x"))
		tw.Close()
		into := filepath.Join(t.TempDir(), "into")
		d, _ := New(nil)
		err := d.Restore(context.Background(), all, &b, drivers.RestoreOptions{Into: into})
		if err == nil || !strings.Contains(err.Error(), "outside") {
			t.Errorf("%s: err = %v", name, err)
		}
		if _, err := os.Stat(filepath.Join(filepath.Dir(into), "escape")); err == nil {
			t.Errorf("%s: a file was written outside", name)
		}
	}
	// A symlink in the archive cannot be used to write through it.
	var b bytes.Buffer
	tw := tar.NewWriter(&b)
	outside := t.TempDir()
	tw.WriteHeader(&tar.Header{Name: "link", Linkname: outside, Typeflag: tar.TypeSymlink})
	tw.WriteHeader(&tar.Header{Name: "link/file", Mode: 0o644, Size: 1, Typeflag: tar.TypeReg})
	tw.Write([]byte("x"))
	tw.Close()
	d, _ := New(nil)
	err := d.Restore(context.Background(), all, &b, drivers.RestoreOptions{Into: filepath.Join(t.TempDir(), "into")})
	if _, serr := os.Stat(filepath.Join(outside, "file")); serr == nil {
		t.Fatalf("the restore wrote through a symlink out of the destination (err %v)", err)
	}
}
