package files

import (
	"archive/tar"
	"bytes"
	"context"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"

	"remora.dev/remora/drivers"
)

// entry is one member of a hand-built archive.
type entry struct {
	hdr  tar.Header
	body string
}

func reg(name, body string) entry {
	return entry{tar.Header{Name: name, Typeflag: tar.TypeReg, Mode: 0o644, Size: int64(len(body))}, body}
}

func symlink(name, target string) entry {
	return entry{hdr: tar.Header{Name: name, Typeflag: tar.TypeSymlink, Linkname: target, Mode: 0o777}}
}

func hardlink(name, target string) entry {
	return entry{hdr: tar.Header{Name: name, Typeflag: tar.TypeLink, Linkname: target, Mode: 0o644}}
}

func dir(name string) entry {
	return entry{hdr: tar.Header{Name: name, Typeflag: tar.TypeDir, Mode: 0o755}}
}

func archive(t *testing.T, ents ...entry) []byte {
	t.Helper()
	var b bytes.Buffer
	tw := tar.NewWriter(&b)
	for _, e := range ents {
		h := e.hdr
		if err := tw.WriteHeader(&h); err != nil {
			t.Fatalf("%s: %v", h.Name, err)
		}
		if _, err := tw.Write([]byte(e.body)); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// sparseArchive is an archive of one PAX (GNU 0.1) sparse file: one byte of
// data at the end of a hole of size-1 bytes. archive/tar writes no sparse
// files, so the extended header is made by hand.
func sparseArchive(t *testing.T, name string, size int64) []byte {
	t.Helper()
	var recs strings.Builder
	for _, kv := range [][2]string{{"GNU.sparse.major", "0"}, {"GNU.sparse.minor", "1"},
		{"GNU.sparse.size", fmt.Sprint(size)}, {"GNU.sparse.numblocks", "1"}, {"GNU.sparse.map", fmt.Sprintf("%d,1", size-1)}} {
		rec := " " + kv[0] + "=" + kv[1] + "\n"
		n := len(rec) + 1
		for len(fmt.Sprint(n))+len(rec) != n {
			n++
		}
		fmt.Fprintf(&recs, "%d%s", n, rec)
	}
	b := archive(t,
		entry{tar.Header{Name: "PaxHeaders/x", Typeflag: tar.TypeReg, Mode: 0o644, Size: int64(recs.Len()), Format: tar.FormatUSTAR}, recs.String()},
		entry{tar.Header{Name: name, Typeflag: tar.TypeReg, Mode: 0o644, Size: 1, Format: tar.FormatUSTAR}, "x"})
	// Make the first member an extended header: its type, then its checksum.
	hdr := b[:512]
	hdr[156] = tar.TypeXHeader
	copy(hdr[148:156], "        ")
	sum := 0
	for _, c := range hdr {
		sum += int(c)
	}
	copy(hdr[148:156], fmt.Sprintf("%06o\x00 ", sum))
	return b
}

// snapshot lists every path below base with its type, size and link count,
// leaving out what lies below skip.
func snapshot(t *testing.T, base, skip string) map[string]string {
	t.Helper()
	out := map[string]string{}
	filepath.WalkDir(base, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return nil
		}
		if p == skip {
			return fs.SkipDir
		}
		info, err := os.Lstat(p)
		if err != nil {
			return nil
		}
		desc := fmt.Sprintf("%v %d", info.Mode(), info.Size())
		if st, ok := info.Sys().(*syscall.Stat_t); ok && !info.IsDir() {
			desc += fmt.Sprintf(" nlink=%d", st.Nlink)
		}
		out[p] = desc
		return nil
	})
	return out
}

// TestRestoreStaysInBounds: a files restore writes only below the paths the
// backup recorded. Each archive breaks out in its own way and must be refused
// with an error naming the member, with nothing written anywhere else: not
// elsewhere in the destination, not outside it.
func TestRestoreStaysInBounds(t *testing.T) {
	for _, tc := range []struct {
		name    string
		archive func(t *testing.T, outside string) []byte
		culprit string // the member the error names
		absent  string // if set, a path below the destination that must not exist
	}{
		{"dot-dot", func(t *testing.T, _ string) []byte {
			return archive(t, reg("srv/data/../../../escape", "x"))
		}, "srv/data/../../../escape", ""},
		{"absolute path elsewhere", func(t *testing.T, _ string) []byte {
			return archive(t, reg("/etc/x", "x"))
		}, "/etc/x", ""},
		{"relative path elsewhere", func(t *testing.T, _ string) []byte {
			return archive(t, dir("srv/data/"), reg("srv/other", "x"))
		}, "srv/other", ""},
		{"dot-dot back out of the path", func(t *testing.T, _ string) []byte {
			return archive(t, reg("srv/data/../data-2/x", "x"))
		}, "srv/data/../data-2/x", ""},
		{"write through a symlink out of the path", func(t *testing.T, _ string) []byte {
			return archive(t, dir("srv/data/"), symlink("srv/data/link", "../../etc"), reg("srv/data/link/x", "x"))
		}, "srv/data/link/x", ""},
		{"write through a symlink out of the destination", func(t *testing.T, outside string) []byte {
			return archive(t, dir("srv/data/"), symlink("srv/data/link", outside), reg("srv/data/link/x", "x"))
		}, "srv/data/link/x", ""},
		{"the path itself made a symlink", func(t *testing.T, _ string) []byte {
			return archive(t, symlink("srv/data", "../etc"), reg("srv/data/x", "x"))
		}, "srv/data/x", ""},
		{"directory through a symlink", func(t *testing.T, _ string) []byte {
			return archive(t, dir("srv/data/"), symlink("srv/data/link", "../../etc"), dir("srv/data/link/d/"))
		}, "srv/data/link/d/", ""},
		{"hard link to a file elsewhere", func(t *testing.T, _ string) []byte {
			return archive(t, dir("srv/data/"), hardlink("srv/data/h", "/etc/passwd"))
		}, "srv/data/h", ""},
		{"hard link through a symlink", func(t *testing.T, _ string) []byte {
			return archive(t, dir("srv/data/"), symlink("srv/data/l", "../../etc"), hardlink("srv/data/h", "srv/data/l/passwd"))
		}, "srv/data/h", ""},
		{"hard link to a symlink", func(t *testing.T, _ string) []byte {
			return archive(t, dir("srv/data/"), symlink("srv/data/s", "../../etc/passwd"), hardlink("srv/data/h", "srv/data/s"))
		}, "srv/data/h", "srv/data/h"},
		{"hard link placed elsewhere", func(t *testing.T, _ string) []byte {
			return archive(t, reg("srv/data/f", "x"), hardlink("etc/h", "srv/data/f"))
		}, "etc/h", ""},
		{"device node elsewhere", func(t *testing.T, _ string) []byte {
			return archive(t, entry{hdr: tar.Header{Name: "dev/x", Typeflag: tar.TypeChar, Mode: 0o666, Devmajor: 1, Devminor: 3}})
		}, "dev/x", ""},
		{"sparse file", func(t *testing.T, _ string) []byte {
			return sparseArchive(t, "srv/data/big", 64<<20)
		}, "srv/data/big", "srv/data/big"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			base := t.TempDir()
			into := filepath.Join(base, "into")
			outside := filepath.Join(base, "outside")
			for _, d := range []string{outside, filepath.Join(into, "etc")} {
				os.MkdirAll(d, 0o755)
				os.WriteFile(filepath.Join(d, "passwd"), []byte("root:x:0:0"), 0o644)
			}
			bound := filepath.Join(into, "srv/data")
			before := snapshot(t, base, bound)
			d, _ := New(nil)
			obj := drivers.Object{Name: "files.tar", Kind: drivers.KindFiles, Database: "files", Format: FormatTar, Meta: map[string]string{"paths": "/srv/data"}}
			err := d.Restore(context.Background(), obj, bytes.NewReader(tc.archive(t, outside)), drivers.RestoreOptions{Into: into, Yes: true})
			if err == nil || !strings.Contains(err.Error(), fmt.Sprintf("%q", tc.culprit)) {
				t.Errorf("err = %v, want an error naming %q", err, tc.culprit)
			}
			if tc.absent != "" {
				if _, err := os.Lstat(filepath.Join(into, tc.absent)); err == nil {
					t.Errorf("%s was written", tc.absent)
				}
			}
			after := snapshot(t, base, bound)
			for _, p := range []string{filepath.Join(into, "srv"), bound} {
				delete(after, p) // the way to the backed-up path
			}
			for p, desc := range after {
				if before[p] != desc {
					t.Errorf("written outside %s: %s (%s, was %q)", bound, p, desc, before[p])
				}
			}
			for p := range before {
				if _, ok := after[p]; !ok {
					t.Errorf("removed outside %s: %s", bound, p)
				}
			}
		})
	}
}

// TestRestoreKeepsAllThatIsInBounds: what a dump of several paths holds is
// restored whole: symlinks wherever they point (they are data, and only
// written, never followed), hard links within a path and across paths.
func TestRestoreKeepsAllThatIsInBounds(t *testing.T) {
	src := t.TempDir()
	a, b := filepath.Join(src, "a"), filepath.Join(src, "b")
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(os.MkdirAll(filepath.Join(a, "sub"), 0o755))
	must(os.MkdirAll(b, 0o755))
	must(os.WriteFile(filepath.Join(a, "sub/f"), []byte("f"), 0o644))
	must(os.Link(filepath.Join(a, "sub/f"), filepath.Join(a, "same")))
	must(os.Link(filepath.Join(a, "sub/f"), filepath.Join(b, "across")))
	must(os.Symlink("sub", filepath.Join(a, "inside")))
	must(os.Symlink("/etc/hostname", filepath.Join(a, "absolute")))
	must(os.Symlink("../../../..", filepath.Join(b, "up")))
	d, err := New([]string{a, b})
	must(err)
	var tarball bytes.Buffer
	must(d.Dump(context.Background(), d.Object(), &tarball))

	into := filepath.Join(t.TempDir(), "into")
	r, _ := New(nil)
	must(r.Restore(context.Background(), d.Object(), &tarball, drivers.RestoreOptions{Into: into}))
	at := func(p string) string { return filepath.Join(into, p) }
	for link, target := range map[string]string{"inside": "sub", "absolute": "/etc/hostname"} {
		if got, _ := os.Readlink(at(filepath.Join(a, link))); got != target {
			t.Errorf("%s -> %q, want %q", link, got, target)
		}
	}
	if got, _ := os.Readlink(at(filepath.Join(b, "up"))); got != "../../../.." {
		t.Errorf("up -> %q", got)
	}
	f, err := os.Stat(at(filepath.Join(a, "sub/f")))
	must(err)
	for _, p := range []string{filepath.Join(a, "same"), filepath.Join(b, "across")} {
		if l, err := os.Stat(at(p)); err != nil || !os.SameFile(f, l) {
			t.Errorf("%s is not a hard link of sub/f (%v)", p, err)
		}
	}
}

// TestRestoreWithoutRootDropsSetuid: a restore that cannot restore owners
// does not restore setuid and setgid on files either: they would give the
// restoring user's rights to whoever runs the file. A setgid directory only
// passes its group on, and keeps the bit.
func TestRestoreWithoutRootDropsSetuid(t *testing.T) {
	ents := []entry{
		{hdr: tar.Header{Name: "srv/data/", Typeflag: tar.TypeDir, Mode: 0o2775}},
		{tar.Header{Name: "srv/data/suid", Typeflag: tar.TypeReg, Mode: 0o4755, Size: 1}, "x"},
		{tar.Header{Name: "srv/data/sgid", Typeflag: tar.TypeReg, Mode: 0o2755, Size: 1}, "x"},
	}
	obj := drivers.Object{Name: "files.tar", Kind: drivers.KindFiles, Meta: map[string]string{"paths": "/srv/data"}}
	for _, asRoot := range []bool{false, true} {
		t.Run(fmt.Sprintf("root=%v", asRoot), func(t *testing.T) {
			if asRoot && os.Geteuid() != 0 {
				t.Skip("not root")
			}
			into := filepath.Join(t.TempDir(), "into")
			var warnings []string
			d, _ := New(nil)
			opts := drivers.RestoreOptions{Into: into, Warn: func(m string) { warnings = append(warnings, m) }}
			if err := d.restore(context.Background(), obj, bytes.NewReader(archive(t, ents...)), opts, asRoot); err != nil {
				t.Fatal(err)
			}
			want := map[string]fs.FileMode{"suid": 0o755, "sgid": 0o755, ".": fs.ModeDir | fs.ModeSetgid | 0o775}
			if asRoot {
				want["suid"], want["sgid"] = fs.ModeSetuid|0o755, fs.ModeSetgid|0o755
			}
			for name, mode := range want {
				info, err := os.Lstat(filepath.Join(into, "srv/data", name))
				if err != nil || info.Mode() != mode {
					t.Errorf("%s: mode %v (%v), want %v", name, info.Mode(), err, mode)
				}
			}
			if got := slices.ContainsFunc(warnings, func(w string) bool { return strings.Contains(w, "setuid") }); got == asRoot {
				t.Errorf("warnings: %q", warnings)
			}
		})
	}
}
