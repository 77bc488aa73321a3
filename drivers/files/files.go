// Package files archives files and directories as a tar stream (POSIX pax
// format, readable by any tar), keeping modes, owners, times, symlinks and
// hard links. It is a driver of its own (--driver files) and adds extra
// files to a backup of any other driver (--paths).
package files

import (
	"archive/tar"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"remora.dev/remora/drivers"
)

// Name is the driver's name in --driver and remora.dev/driver.
const Name = drivers.Files

// FormatTar is the format of a files object.
const FormatTar = "tar"

// objectDatabase is how the files object is named in --database and list.
const objectDatabase = "files"

func init() {
	drivers.Register(Name, func(cfg drivers.Config) (drivers.Driver, error) {
		if err := drivers.CheckArgs("files", cfg.DumpArgs, nil); err != nil {
			return nil, err
		}
		return New(cfg.Paths)
	})
}

// Driver archives a set of paths.
type Driver struct {
	paths []string
}

// New checks the paths: absolute, and no two the same. A driver with no paths
// can only restore.
func New(paths []string) (*Driver, error) {
	var clean []string
	for _, p := range paths {
		if !filepath.IsAbs(p) {
			return nil, fmt.Errorf("files: path %q is not absolute", p)
		}
		if c := filepath.Clean(p); !slices.Contains(clean, c) {
			clean = append(clean, c)
		}
	}
	return &Driver{paths: clean}, nil
}

// Object is the files object of a backup.
func (d *Driver) Object() drivers.Object {
	return drivers.Object{Name: "files.tar", Kind: drivers.KindFiles, Database: objectDatabase, Format: FormatTar,
		Meta: map[string]string{"paths": strings.Join(d.paths, ",")}}
}

func (d *Driver) Plan(ctx context.Context) (*drivers.Plan, error) {
	if len(d.paths) == 0 {
		return nil, fmt.Errorf("files: no paths given: set --paths (REMORA_PATHS), e.g. /var/lib/app/uploads")
	}
	for _, p := range d.paths {
		if _, err := os.Lstat(p); err != nil {
			return nil, fmt.Errorf("files: %w: check --paths and the volume mounts", err)
		}
	}
	host, _ := os.Hostname()
	return &drivers.Plan{ServerVersion: "host " + host, Tools: map[string]string{"tar": "pax (Go archive/tar)"}, Objects: []drivers.Object{d.Object()}}, nil
}

// inode identifies a file for hard-link detection.
type inode struct{ dev, ino uint64 }

// Dump writes a tar stream of the paths. A file that vanishes before it is
// read is left out, and one that changes while it is read is archived as read;
// both are reported as warnings, not failures: live application volumes
// change.
func (d *Driver) Dump(ctx context.Context, obj drivers.Object, w io.Writer) error {
	tw := tar.NewWriter(w)
	links := map[inode]string{}
	buf := make([]byte, 256<<10)
	for _, root := range d.paths {
		err := filepath.WalkDir(root, func(p string, de fs.DirEntry, err error) error {
			if cerr := ctx.Err(); cerr != nil {
				return cerr
			}
			if err != nil {
				if errors.Is(err, fs.ErrNotExist) {
					drivers.Warnf(ctx, "files: %s vanished before it was read", p)
					return nil
				}
				return fmt.Errorf("files: %w", err)
			}
			return d.add(ctx, tw, p, links, buf)
		})
		if err != nil {
			return err
		}
	}
	return tw.Close()
}

func (d *Driver) add(ctx context.Context, tw *tar.Writer, p string, links map[inode]string, buf []byte) error {
	info, err := os.Lstat(p)
	if errors.Is(err, fs.ErrNotExist) {
		drivers.Warnf(ctx, "files: %s vanished before it was read", p)
		return nil
	}
	if err != nil {
		return fmt.Errorf("files: %w", err)
	}
	if info.Mode()&fs.ModeSocket != 0 {
		return nil // sockets cannot be archived, nor are they data
	}
	var target string
	if info.Mode()&fs.ModeSymlink != 0 {
		if target, err = os.Readlink(p); err != nil {
			return fmt.Errorf("files: %w", err)
		}
	}
	hdr, err := tar.FileInfoHeader(info, target)
	if err != nil {
		return fmt.Errorf("files: %s: %w", p, err)
	}
	hdr.Format = tar.FormatPAX
	hdr.Name = strings.TrimPrefix(filepath.ToSlash(p), "/")
	if info.IsDir() {
		hdr.Name += "/"
	}
	hdr.Uname, hdr.Gname = "", "" // numeric owners: names differ between containers
	st, _ := info.Sys().(*syscall.Stat_t)
	if st != nil && info.Mode().IsRegular() && st.Nlink > 1 {
		key := inode{uint64(st.Dev), st.Ino}
		if first, ok := links[key]; ok {
			hdr.Typeflag, hdr.Linkname, hdr.Size = tar.TypeLink, first, 0
			return tw.WriteHeader(hdr)
		}
		links[key] = hdr.Name
	}
	if !info.Mode().IsRegular() {
		return tw.WriteHeader(hdr)
	}
	f, err := os.OpenFile(p, os.O_RDONLY|syscall.O_NOFOLLOW, 0)
	if errors.Is(err, fs.ErrNotExist) {
		drivers.Warnf(ctx, "files: %s vanished before it was read", p)
		return nil
	}
	if err != nil {
		return fmt.Errorf("files: %w", err)
	}
	defer f.Close()
	if err := tw.WriteHeader(hdr); err != nil {
		return err
	}
	n, err := io.CopyBuffer(tw, io.LimitReader(f, hdr.Size), buf)
	if err != nil {
		return fmt.Errorf("files: read %s: %w", p, err)
	}
	if n < hdr.Size {
		// The file shrank while it was read: the archive needs the size it
		// announced.
		drivers.Warnf(ctx, "files: %s shrank while it was read; archived with zeros at the end", p)
		if _, err := io.CopyN(tw, zeros{}, hdr.Size-n); err != nil {
			return err
		}
		return nil
	}
	if after, err := f.Stat(); err == nil && (after.Size() != hdr.Size || !after.ModTime().Equal(info.ModTime())) {
		drivers.Warnf(ctx, "files: %s changed while it was read; archived as read", p)
	}
	return nil
}

type zeros struct{}

func (zeros) Read(p []byte) (int, error) {
	clear(p)
	return len(p), nil
}

// destination is where a restore writes: the directory given with --into, or
// the root of the filesystem for a restore to the original places.
func destination(opts drivers.RestoreOptions) string {
	if opts.Into != "" {
		return opts.Into
	}
	return "/"
}

func (d *Driver) CheckRestore(ctx context.Context, objs []drivers.Object, opts drivers.RestoreOptions) error {
	for _, obj := range objs {
		if obj.Kind != drivers.KindFiles {
			continue
		}
		dst := destination(opts)
		if !filepath.IsAbs(dst) {
			return fmt.Errorf("files: --into %q: want an absolute directory", dst)
		}
		if opts.Into == "" && !opts.Yes {
			return fmt.Errorf("files: restoring to the original places (%s) overwrites files: add --yes, or restore with --into DIR", obj.Meta["paths"])
		}
		if ents, err := os.ReadDir(dst); err == nil && len(ents) > 0 && !opts.Yes {
			return fmt.Errorf("files: %s is not empty and the restore may overwrite files in it: add --yes, or choose an empty directory", dst)
		}
	}
	return nil
}

// Restore extracts the archive below the destination. Every path stays inside
// it (no "..", no following a symlink out of it), each file is written under a
// temporary name and renamed into place, and modes, owners (when running as
// root) and times are set as archived. A directory that --into created is
// removed again if the restore fails.
func (d *Driver) Restore(ctx context.Context, obj drivers.Object, r io.Reader, opts drivers.RestoreOptions) (err error) {
	dst := destination(opts)
	if _, serr := os.Stat(dst); errors.Is(serr, fs.ErrNotExist) && opts.Into != "" {
		if err := os.MkdirAll(dst, 0o755); err != nil {
			return fmt.Errorf("files: %w", err)
		}
		defer func() {
			if err != nil {
				os.RemoveAll(dst)
			}
		}()
	}
	root, err := os.OpenRoot(dst)
	if err != nil {
		return fmt.Errorf("files: %w", err)
	}
	defer root.Close()
	x := &extractor{root: root, asRoot: os.Geteuid() == 0, opts: opts}
	tr := tar.NewReader(r)
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return fmt.Errorf("files: read archive: %w", err)
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		if err := x.entry(hdr, tr); err != nil {
			return err
		}
	}
	// Directory times last: writing into a directory changes its time.
	for i := len(x.dirs) - 1; i >= 0; i-- {
		h := x.dirs[i]
		_ = root.Chtimes(h.Name, h.ModTime, h.ModTime)
	}
	if x.skipped > 0 {
		opts.Warnf("files: %d special files (devices, FIFOs) were not restored", x.skipped)
	}
	return nil
}

type extractor struct {
	root    *os.Root
	asRoot  bool
	opts    drivers.RestoreOptions
	dirs    []*tar.Header
	skipped int
}

// clean checks an archive path and makes it relative to the root.
func clean(name string) (string, error) {
	c := path.Clean(strings.TrimPrefix(name, "/"))
	if c == "." || c == ".." || strings.HasPrefix(c, "../") {
		return "", fmt.Errorf("files: the archive holds a path outside the destination: %q", name)
	}
	return c, nil
}

func (x *extractor) entry(hdr *tar.Header, r io.Reader) error {
	name, err := clean(hdr.Name)
	if err != nil {
		return err
	}
	if dir := path.Dir(name); dir != "." {
		if err := x.root.MkdirAll(dir, 0o755); err != nil {
			return fmt.Errorf("files: %w", err)
		}
	}
	mode := hdr.FileInfo().Mode()
	switch hdr.Typeflag {
	case tar.TypeDir:
		if err := x.root.MkdirAll(name, mode.Perm()); err != nil {
			return fmt.Errorf("files: %w", err)
		}
		h := *hdr
		h.Name = name
		x.dirs = append(x.dirs, &h)
		return x.attrs(name, hdr, true)
	case tar.TypeReg:
		tmp := path.Join(path.Dir(name), "."+path.Base(name)+".remora-tmp-"+randomSuffix())
		f, err := x.root.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
		if err != nil {
			return fmt.Errorf("files: %w", err)
		}
		_, err = io.Copy(f, r)
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err == nil {
			err = x.attrs(tmp, hdr, true)
		}
		if err == nil {
			err = x.replace(tmp, name)
		}
		if err != nil {
			x.root.Remove(tmp)
			return fmt.Errorf("files: %s: %w", name, err)
		}
		return nil
	case tar.TypeSymlink:
		x.removeIfNotDir(name)
		if err := x.root.Symlink(hdr.Linkname, name); err != nil {
			return fmt.Errorf("files: %w", err)
		}
		return x.attrs(name, hdr, false)
	case tar.TypeLink:
		old, err := clean(hdr.Linkname)
		if err != nil {
			return err
		}
		x.removeIfNotDir(name)
		if err := x.root.Link(old, name); err != nil {
			return fmt.Errorf("files: %w", err)
		}
		return nil
	default:
		x.skipped++
		return nil
	}
}

func (x *extractor) removeIfNotDir(name string) {
	if st, err := x.root.Lstat(name); err == nil && !st.IsDir() {
		x.root.Remove(name)
	}
}

// replace renames tmp onto name, refusing to replace a directory with a file.
func (x *extractor) replace(tmp, name string) error {
	if st, err := x.root.Lstat(name); err == nil && st.IsDir() {
		return fmt.Errorf("a directory is in the way")
	}
	return x.root.Rename(tmp, name)
}

// attrs sets owner, mode and times. Owners are set only when running as root.
func (x *extractor) attrs(name string, hdr *tar.Header, times bool) error {
	if x.asRoot {
		if err := x.root.Lchown(name, hdr.Uid, hdr.Gid); err != nil {
			return err
		}
	}
	if hdr.Typeflag == tar.TypeSymlink {
		return nil
	}
	if err := x.root.Chmod(name, hdr.FileInfo().Mode()&(fs.ModePerm|fs.ModeSetuid|fs.ModeSetgid|fs.ModeSticky)); err != nil {
		return err
	}
	if times {
		return x.root.Chtimes(name, time.Time{}, hdr.ModTime)
	}
	return nil
}

func randomSuffix() string {
	var b [6]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}
