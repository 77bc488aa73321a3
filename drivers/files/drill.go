package files

// Restore drills: what a drill checks of a files object, recorded while
// the tar is written (the number of files, their bytes, and the SHA-256 of
// the largest drivers.MaxChecks files as archived), and a temporary
// directory to restore into.

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"hash"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"

	"remora.dev/remora/drivers"
)

// Meta keys of the checks.
const (
	checkFiles = drivers.CheckPrefix + "files"   // regular files (hard links count once per name)
	checkBytes = drivers.CheckPrefix + "bytes"   // their bytes (a hard-linked file's once)
	checkSum   = drivers.CheckPrefix + "sha256." // + the file's name in the tar
)

func init() {
	drivers.RegisterScratch(Name, func(_ context.Context, o drivers.ScratchOptions) (*drivers.Scratch, error) {
		return &drivers.Scratch{Into: filepath.Join(o.Dir, "files"), Stop: func() {}}, nil
	})
}

// sums gathers the checks of a dump.
type sums struct {
	files, bytes, total int64
	largest             []fileSum
}

type fileSum struct {
	name string
	size int64
	sum  string
}

// add records one archived file; only the largest MaxChecks sums are kept.
func (s *sums) add(name string, size int64, h hash.Hash) {
	s.files++
	s.bytes += size
	s.largest = append(s.largest, fileSum{name, size, hex.EncodeToString(h.Sum(nil))})
	if len(s.largest) >= 2*drivers.MaxChecks {
		s.trim()
	}
}

func (s *sums) trim() {
	sort.Slice(s.largest, func(i, j int) bool {
		a, b := s.largest[i], s.largest[j]
		return a.size > b.size || a.size == b.size && a.name < b.name
	})
	if len(s.largest) > drivers.MaxChecks {
		s.largest = s.largest[:drivers.MaxChecks]
	}
}

func (s *sums) meta() map[string]string {
	s.trim()
	out := map[string]string{checkFiles: strconv.FormatInt(s.files, 10), checkBytes: strconv.FormatInt(s.bytes, 10)}
	for _, f := range s.largest {
		out[checkSum+f.name] = f.sum
	}
	if n := s.files - int64(len(s.largest)); n > 0 {
		out[drivers.MetaChecksOmitted] = fmt.Sprintf("the sums of %d of %d files (the largest %d are summed)", n, s.files, len(s.largest))
	}
	return out
}

// Observe reads the restored directory: its regular files, their bytes,
// and the sums of the files the dump summed.
func (d *Driver) Observe(ctx context.Context, obj drivers.Object, opts drivers.RestoreOptions) (map[string]string, error) {
	if obj.Kind != drivers.KindFiles {
		return nil, nil
	}
	dst := destination(opts)
	var files, bytes int64
	seen := map[inode]bool{}
	err := filepath.WalkDir(dst, func(p string, de fs.DirEntry, err error) error {
		if err != nil || !de.Type().IsRegular() {
			return err
		}
		info, err := de.Info()
		if err != nil {
			return err
		}
		files++
		if st, ok := info.Sys().(*syscall.Stat_t); ok {
			key := inode{uint64(st.Dev), st.Ino}
			if seen[key] {
				return ctx.Err()
			}
			seen[key] = true
		}
		bytes += info.Size()
		return ctx.Err()
	})
	if err != nil {
		return nil, fmt.Errorf("files: %w", err)
	}
	got := map[string]string{checkFiles: strconv.FormatInt(files, 10), checkBytes: strconv.FormatInt(bytes, 10)}
	for k := range obj.Meta {
		name, ok := strings.CutPrefix(k, checkSum)
		if !ok {
			continue
		}
		if sum, err := fileSHA256(dst, name); err == nil {
			got[k] = sum
		}
	}
	return got, nil
}

// fileSHA256 sums the file name below dir, not following a symlink out of
// it.
func fileSHA256(dir, name string) (string, error) {
	root, err := os.OpenRoot(dir)
	if err != nil {
		return "", err
	}
	defer root.Close()
	f, err := root.Open(name)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}
