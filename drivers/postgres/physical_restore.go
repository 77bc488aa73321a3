package postgres

import (
	"archive/tar"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"

	"remora.dev/remora/drivers"
)

// ExtractBaseTar unpacks a physical backup's tar (FormatBaseTar) into a new
// data directory o.Dir, and each tablespace into o.Tablespaces[oid] or, if
// not mapped, the location it had on the backed-up server. This is the
// contract a point-in-time restore builds on:
//
//   - o.Dir, and each tablespace's directory, must not exist or be empty:
//     anything else is refused before a byte is written.
//   - Everything is written into a temporary directory beside (or, for an
//     existing empty directory, inside) its target, and moved into place
//     only after r was read to its end without error (the caller's checksum
//     verdict): a failed restore leaves nothing that looks like a data
//     directory (PG_VERSION is moved last).
//   - Names are checked: no absolute name, no "..", no links but the
//     pg_tblspc/<oid> links, which point to the tablespace's new directory
//     (tablespace_map is rewritten to match).
//   - o.Dir gets mode 0700; run as root, files get the owner they had on
//     the server (the server refuses a data directory it does not own).
//
// The directory holds backup_label, the WAL the backup needs in pg_wal/
// and the backup_manifest: a server started on it recovers to the backup's
// stop point and opens. A caller that wants more (recovery settings, a
// restore_command) adds them after ExtractBaseTar returns.
func ExtractBaseTar(ctx context.Context, obj drivers.Object, r io.Reader, o drivers.ExtractOptions) error {
	x, err := newExtraction(obj, o)
	if err != nil {
		return err
	}
	if err := x.run(ctx, tar.NewReader(r)); err != nil {
		x.abandon()
		return err
	}
	// The tar ends before the object does (padding): read to the end, where
	// the caller's checksum check gives its verdict.
	if _, err := io.Copy(io.Discard, r); err != nil {
		x.abandon()
		return err
	}
	return x.commit()
}

// target is a directory being filled: the data directory or a tablespace's.
type target struct {
	final   string // the directory it becomes
	stage   string // where its entries are written
	inPlace bool   // final existed, empty: stage is inside it
	uid     int    // owner of its entries, -1 until one is seen
	gid     int
	moved   bool // committed
}

// extraction is one ExtractBaseTar.
type extraction struct {
	data        *target
	tablespaces map[string]*target // by OID
	root        bool               // running as root: files keep their owner
	warn        func(string)
}

var oidRE = regexp.MustCompile(`^[0-9]+$`)

func newExtraction(obj drivers.Object, o drivers.ExtractOptions) (*extraction, error) {
	x := &extraction{tablespaces: map[string]*target{}, root: os.Geteuid() == 0, warn: o.Warn}
	if x.warn == nil {
		x.warn = func(string) {}
	}
	locations := map[string]string{}
	for k, v := range obj.Meta {
		if oid, ok := strings.CutPrefix(k, MetaTablespacePrefix); ok {
			locations[oid] = v
		}
	}
	for oid, dir := range o.Tablespaces {
		if _, ok := locations[oid]; !ok {
			return nil, fmt.Errorf("--tablespace-map %s=%s: the backup has no tablespace %s (it has: %s)", oid, dir, oid, strings.Join(sortedOIDs(locations), ", "))
		}
		locations[oid] = dir
	}
	var err error
	if x.data, err = prepare(o.Dir, "data directory"); err != nil {
		return nil, err
	}
	for _, oid := range sortedOIDs(locations) {
		t, err := prepare(locations[oid], "tablespace "+oid+"'s directory")
		if err != nil {
			x.abandon()
			return nil, fmt.Errorf("%w (map it elsewhere with --tablespace-map %s=DIR)", err, oid)
		}
		x.tablespaces[oid] = t
	}
	return x, nil
}

func sortedOIDs(m map[string]string) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// prepare checks that dir does not exist or is empty, and makes the
// temporary directory its entries are written to.
func prepare(dir, what string) (*target, error) {
	if dir == "" || !filepath.IsAbs(dir) {
		return nil, fmt.Errorf("the %s %q is not an absolute path", what, dir)
	}
	dir = filepath.Clean(dir)
	t := &target{final: dir, uid: -1, gid: -1}
	st, err := os.Stat(dir)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		parent := filepath.Dir(dir)
		if err := os.MkdirAll(parent, 0o755); err != nil {
			return nil, err
		}
		t.stage, err = os.MkdirTemp(parent, "."+filepath.Base(dir)+".remora-restore-")
		return t, err
	case err != nil:
		return nil, err
	case !st.IsDir():
		return nil, fmt.Errorf("the %s %s exists and is not a directory: a restore never replaces it", what, dir)
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	if len(entries) > 0 {
		return nil, fmt.Errorf("the %s %s is not empty: a restore never touches an existing data directory; give a new or empty one", what, dir)
	}
	t.inPlace = true
	t.stage, err = os.MkdirTemp(dir, ".remora-restore-")
	return t, err
}

// abandon removes what was written; nothing was moved into place yet.
func (x *extraction) abandon() {
	for _, t := range x.all() {
		if t.stage != "" {
			os.RemoveAll(t.stage)
		}
	}
}

func (x *extraction) all() []*target {
	out := []*target{}
	for _, oid := range sortedTargets(x.tablespaces) {
		out = append(out, x.tablespaces[oid])
	}
	if x.data != nil {
		out = append(out, x.data)
	}
	return out
}

func sortedTargets(m map[string]*target) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// commit moves every target into place, the data directory last; on a
// failure it takes back what it moved.
func (x *extraction) commit() error {
	for _, t := range x.all() {
		if err := t.commit(x.root); err != nil {
			for _, done := range x.all() {
				done.rollback()
			}
			return err
		}
	}
	return nil
}

// commit moves a target's stage into place: a rename, or for a directory
// that existed (a mount point, say) its entries one by one, PG_VERSION
// last, so that a directory left half-moved is no data directory.
func (t *target) commit(root bool) error {
	if err := os.Chmod(t.stage, 0o700); err != nil {
		return err
	}
	if root && t.uid >= 0 {
		if err := os.Lchown(t.stage, t.uid, t.gid); err != nil {
			return err
		}
	}
	if !t.inPlace {
		if err := os.Rename(t.stage, t.final); err != nil {
			return err
		}
		t.moved = true
		return nil
	}
	entries, err := os.ReadDir(t.stage)
	if err != nil {
		return err
	}
	sort.SliceStable(entries, func(i, j int) bool { return entries[j].Name() == "PG_VERSION" && entries[i].Name() != "PG_VERSION" })
	t.moved = true
	for _, e := range entries {
		if err := os.Rename(filepath.Join(t.stage, e.Name()), filepath.Join(t.final, e.Name())); err != nil {
			return err
		}
	}
	if err := os.Remove(t.stage); err != nil {
		return err
	}
	if root && t.uid >= 0 {
		os.Lchown(t.final, t.uid, t.gid)
	}
	return os.Chmod(t.final, 0o700)
}

// rollback takes back what commit moved (the directory was empty before),
// and removes the stage.
func (t *target) rollback() {
	os.RemoveAll(t.stage)
	if !t.moved {
		return
	}
	if !t.inPlace {
		os.RemoveAll(t.final)
		return
	}
	entries, _ := os.ReadDir(t.final)
	for _, e := range entries {
		os.RemoveAll(filepath.Join(t.final, e.Name()))
	}
}
