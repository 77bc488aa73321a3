// Package files archives files and directories as a tar stream (POSIX pax
// format, readable by any tar), keeping modes, owners, times, symlinks and
// hard links. It is a driver of its own (--driver files) and adds extra
// files to a backup of any other driver (--paths).
package files

import (
	"archive/tar"
	"context"
	"crypto/rand"
	"crypto/sha256"
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

	"golang.org/x/sys/unix"

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
	_, err := d.DumpMeta(ctx, obj, w)
	return err
}

// DumpMeta is Dump, returning what a restore drill checks (sums).
func (d *Driver) DumpMeta(ctx context.Context, obj drivers.Object, w io.Writer) (map[string]string, error) {
	tw := tar.NewWriter(w)
	sums := &sums{}
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
			return d.add(ctx, tw, p, links, buf, sums)
		})
		if err != nil {
			return nil, err
		}
	}
	return sums.meta(), tw.Close()
}

func (d *Driver) add(ctx context.Context, tw *tar.Writer, p string, links map[inode]string, buf []byte, sums *sums) error {
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
			sums.files++ // restored as a file, sharing the first name's data
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
	h := sha256.New()
	defer func() { sums.add(hdr.Name, hdr.Size, h) }()
	out := io.MultiWriter(tw, h) // the sum of what is archived
	n, err := io.CopyBuffer(out, io.LimitReader(f, hdr.Size), buf)
	if err != nil {
		return fmt.Errorf("files: read %s: %w", p, err)
	}
	if n < hdr.Size {
		// The file shrank while it was read: the archive needs the size it
		// announced.
		drivers.Warnf(ctx, "files: %s shrank while it was read; archived with zeros at the end", p)
		if _, err := io.CopyN(out, zeros{}, hdr.Size-n); err != nil {
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

// Restore extracts the archive below the destination, and only below the
// paths the backup recorded (obj's "paths"): a member elsewhere, or one that
// reaches out of its path through "..", a symlink or a hard link, fails the
// restore with an error naming it, before anything is written there. Each
// file is written under a temporary name and renamed into place, and modes,
// owners (when running as root) and times are set as archived. A directory
// that --into created is removed again if the restore fails.
func (d *Driver) Restore(ctx context.Context, obj drivers.Object, r io.Reader, opts drivers.RestoreOptions) error {
	return d.restore(ctx, obj, r, opts, os.Geteuid() == 0)
}

// restore is Restore, with asRoot telling whether owners can be restored.
func (d *Driver) restore(ctx context.Context, obj drivers.Object, r io.Reader, opts drivers.RestoreOptions, asRoot bool) (err error) {
	bounds, err := restoreBounds(obj)
	if err != nil {
		return err
	}
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
	x := &extractor{root: root, asRoot: asRoot, opts: opts, bounds: bounds,
		roots: map[string]*os.Root{}, symlinks: map[string]bool{}}
	defer x.close()
	if err := x.extract(ctx, tar.NewReader(r)); err != nil {
		return err
	}
	// Directory times last: writing into a directory changes its time.
	for i := len(x.dirs) - 1; i >= 0; i-- {
		d := x.dirs[i]
		_ = d.root.Chtimes(d.name, d.mtime, d.mtime)
	}
	if x.skipped > 0 {
		opts.Warnf("files: %d special files (devices, FIFOs) were not restored", x.skipped)
	}
	if x.dropped > 0 {
		opts.Warnf("files: %d files were restored without their setuid or setgid bit: only a restore run as root restores owners, and with them these bits", x.dropped)
	}
	return nil
}

// restoreBounds are the paths the backup recorded, relative to the
// destination and outermost first. A backup of / records "." (all of it).
func restoreBounds(obj drivers.Object) ([]string, error) {
	var out []string
	for _, p := range strings.Split(obj.Meta["paths"], ",") {
		if p == "" {
			continue
		}
		if !path.IsAbs(p) {
			return nil, fmt.Errorf("files: the backup records the path %q, which is not absolute: the manifest is damaged", p)
		}
		rel := strings.TrimPrefix(path.Clean(p), "/")
		if rel == "" {
			rel = "."
		}
		out = append(out, rel)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("files: the backup records no paths for %s, so nothing in it can be restored: the manifest is damaged", obj.Name)
	}
	slices.SortStableFunc(out, func(a, b string) int { return len(a) - len(b) })
	return out, nil
}

type extractor struct {
	root    *os.Root // the destination
	asRoot  bool
	opts    drivers.RestoreOptions
	bounds  []string            // the backed-up paths, outermost first
	roots   map[string]*os.Root // bound -> its directory, opened once something is written below it
	dirs    []dirTime
	skipped int // devices and FIFOs
	dropped int // files that lost a setuid or setgid bit
	// symlinks are the backed-up paths this restore made symlinks: never
	// written through.
	symlinks map[string]bool
}

// dirTime is a directory whose time is set when everything below it is.
type dirTime struct {
	root  *os.Root
	name  string
	mtime time.Time
}

func (x *extractor) close() {
	for _, r := range x.roots {
		r.Close()
	}
}

func (x *extractor) extract(ctx context.Context, tr *tar.Reader) error {
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return fmt.Errorf("files: read archive: %w", err)
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		if err := x.entry(hdr, tr); err != nil {
			if strings.Contains(err.Error(), errPathEscapes) {
				err = fmt.Errorf("a symlink on the way leads out of the backed-up path, and a restore does not write through it (%w)", err)
			}
			return fmt.Errorf("files: %q: %w", hdr.Name, err)
		}
	}
}

// errPathEscapes is how os.Root refuses to follow a symlink out of its
// directory (the error itself is not exported).
const errPathEscapes = "path escapes from parent"

// clean checks an archive path and makes it relative to the destination.
func clean(name string) (string, error) {
	c := path.Clean(strings.TrimPrefix(name, "/"))
	if c == "." || c == ".." || strings.HasPrefix(c, "../") {
		return "", errors.New("the path is outside the destination")
	}
	return c, nil
}

// place is where the archive path name (clean) is written: in the directory
// of the outermost backed-up path that holds it, opened as a root, so that
// no symlink, whether the archive made it or it was there before, leads out
// of that path; a backed-up path itself is written in the destination.
func (x *extractor) place(name string) (*os.Root, string, error) {
	for _, b := range x.bounds {
		if b == "." || name == b {
			return x.root, name, nil
		}
		if rel, ok := strings.CutPrefix(name, b+"/"); ok {
			r, err := x.boundRoot(b)
			return r, rel, err
		}
	}
	var list []string
	for _, b := range x.bounds {
		list = append(list, "/"+b)
	}
	return nil, "", fmt.Errorf("the path is outside the backed-up paths (%s), and a restore writes only below them", strings.Join(list, ", "))
}

func (x *extractor) boundRoot(b string) (*os.Root, error) {
	if r, ok := x.roots[b]; ok {
		return r, nil
	}
	if x.symlinks[b] {
		return nil, fmt.Errorf("the archive made /%s a symlink, and a restore does not write through it", b)
	}
	if err := x.root.MkdirAll(b, 0o755); err != nil {
		return nil, err
	}
	r, err := x.root.OpenRoot(b)
	if err != nil {
		return nil, err
	}
	x.roots[b] = r
	return r, nil
}

// sparse reports whether hdr is a sparse file, which archive/tar expands
// with zeros: a few bytes of archive could fill the disk. Dump never writes
// one.
func sparse(hdr *tar.Header) bool {
	if hdr.Typeflag == tar.TypeGNUSparse {
		return true
	}
	for k := range hdr.PAXRecords {
		if strings.HasPrefix(k, "GNU.sparse.") {
			return true
		}
	}
	return false
}

func (x *extractor) entry(hdr *tar.Header, r io.Reader) error {
	name, err := clean(hdr.Name)
	if err != nil {
		return err
	}
	root, rel, err := x.place(name)
	if err != nil {
		return err
	}
	if sparse(hdr) {
		return errors.New("a sparse file, which a files backup never holds, is not restored")
	}
	if dir := path.Dir(rel); dir != "." {
		if err := root.MkdirAll(dir, 0o755); err != nil {
			return err
		}
	}
	switch hdr.Typeflag {
	case tar.TypeDir:
		if x.symlinks[name] {
			return errors.New("the archive made this path a symlink, and a restore does not write through it")
		}
		if err := root.MkdirAll(rel, hdr.FileInfo().Mode().Perm()); err != nil {
			return err
		}
		x.dirs = append(x.dirs, dirTime{root, rel, hdr.ModTime})
		return x.attrs(root, rel, hdr, true)
	case tar.TypeReg:
		return x.file(root, rel, name, hdr, r)
	case tar.TypeSymlink:
		x.removeIfNotDir(root, rel)
		if err := root.Symlink(hdr.Linkname, rel); err != nil {
			return err
		}
		if slices.Contains(x.bounds, name) {
			x.symlinks[name] = true
		}
		return x.attrs(root, rel, hdr, false)
	case tar.TypeLink:
		return x.link(root, rel, name, hdr)
	default:
		x.skipped++
		return nil
	}
}

// file writes a regular file under a temporary name and renames it into
// place: a symlink at its name is replaced, never followed.
func (x *extractor) file(root *os.Root, rel, name string, hdr *tar.Header, r io.Reader) error {
	tmp := path.Join(path.Dir(rel), "."+path.Base(rel)+".remora-tmp-"+randomSuffix())
	f, err := root.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	_, err = io.Copy(f, r)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = x.attrs(root, tmp, hdr, true)
	}
	if err == nil {
		err = x.replace(root, tmp, rel)
	}
	if err != nil {
		root.Remove(tmp)
		return err
	}
	delete(x.symlinks, name)
	return nil
}

// link makes a hard link to a regular file below the backed-up paths (Dump
// links to the first name of a file it archived), found as every other name
// is: through the root of its backed-up path, so that neither the target
// nor a symlink on its way can tie the link to a file outside them.
func (x *extractor) link(root *os.Root, rel, name string, hdr *tar.Header) error {
	oldRoot, oldRel, err := x.linkTarget(hdr.Linkname)
	if err != nil {
		return fmt.Errorf("the hard link's target %q: %w", hdr.Linkname, err)
	}
	x.removeIfNotDir(root, rel)
	if err := linkAt(oldRoot, oldRel, root, rel); err != nil {
		return err
	}
	delete(x.symlinks, name)
	return nil
}

func (x *extractor) linkTarget(linkname string) (*os.Root, string, error) {
	old, err := clean(linkname)
	if err != nil {
		return nil, "", err
	}
	root, rel, err := x.place(old)
	if err != nil {
		return nil, "", err
	}
	st, err := root.Lstat(rel)
	if err != nil {
		return nil, "", err
	}
	if !st.Mode().IsRegular() {
		return nil, "", errors.New("not a regular file")
	}
	return root, rel, nil
}

// linkAt makes newName in newRoot a hard link of oldName in oldRoot. The two
// directories are opened through their own roots, so neither name leads out
// of its root.
func linkAt(oldRoot *os.Root, oldName string, newRoot *os.Root, newName string) error {
	if oldRoot == newRoot {
		return newRoot.Link(oldName, newName)
	}
	od, err := oldRoot.Open(path.Dir(oldName))
	if err != nil {
		return err
	}
	defer od.Close()
	nd, err := newRoot.Open(path.Dir(newName))
	if err != nil {
		return err
	}
	defer nd.Close()
	if err := unix.Linkat(int(od.Fd()), path.Base(oldName), int(nd.Fd()), path.Base(newName), 0); err != nil {
		return &os.LinkError{Op: "link", Old: oldName, New: newName, Err: err}
	}
	return nil
}

func (x *extractor) removeIfNotDir(root *os.Root, name string) {
	if st, err := root.Lstat(name); err == nil && !st.IsDir() {
		root.Remove(name)
	}
}

// replace renames tmp onto name, refusing to replace a directory with a file.
func (x *extractor) replace(root *os.Root, tmp, name string) error {
	if st, err := root.Lstat(name); err == nil && st.IsDir() {
		return fmt.Errorf("a directory is in the way")
	}
	return root.Rename(tmp, name)
}

// attrs sets owner, mode and times. Owners are set only when running as
// root, and setuid and setgid bits of files only then too: set on a file
// the restoring user owns, they would hand that user's rights to whoever
// runs it. (A setgid directory only passes its group on, and keeps it.)
func (x *extractor) attrs(root *os.Root, name string, hdr *tar.Header, times bool) error {
	if x.asRoot {
		if err := root.Lchown(name, hdr.Uid, hdr.Gid); err != nil {
			return err
		}
	}
	if hdr.Typeflag == tar.TypeSymlink {
		return nil
	}
	mode := hdr.FileInfo().Mode() & (fs.ModePerm | fs.ModeSetuid | fs.ModeSetgid | fs.ModeSticky)
	if !x.asRoot && hdr.Typeflag != tar.TypeDir && mode&(fs.ModeSetuid|fs.ModeSetgid) != 0 {
		mode &^= fs.ModeSetuid | fs.ModeSetgid
		x.dropped++
	}
	if err := root.Chmod(name, mode); err != nil {
		return err
	}
	if times {
		return root.Chtimes(name, time.Time{}, hdr.ModTime)
	}
	return nil
}

func randomSuffix() string {
	var b [6]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}
