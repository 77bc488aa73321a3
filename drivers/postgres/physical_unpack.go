package postgres

import (
	"archive/tar"
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
)

// maxTablespaceMap bounds the tablespace_map read to be rewritten.
const maxTablespaceMap = 1 << 20

// run writes every entry of tr into its target's stage.
func (x *extraction) run(ctx context.Context, tr *tar.Reader) error {
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		hdr, err := tr.Next()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return fmt.Errorf("read the backup's tar: %w", err)
		}
		if err := x.entry(hdr, tr); err != nil {
			return err
		}
	}
}

// entry writes one entry: a tablespace's under its target, the data
// directory's under it; links only where the data directory links its
// tablespaces.
func (x *extraction) entry(hdr *tar.Header, r io.Reader) error {
	name := strings.TrimSuffix(hdr.Name, "/")
	if !filepath.IsLocal(name) || filepath.Clean(name) != name {
		return fmt.Errorf("the backup holds an unsafe name %q: refused", hdr.Name)
	}
	t, rel := x.data, name
	if rest, ok := strings.CutPrefix(name, TablespacePrefix); ok {
		oid, sub, _ := strings.Cut(rest, "/")
		if t = x.tablespaces[oid]; t == nil {
			return fmt.Errorf("the backup holds files of tablespace %s, which its record does not name", oid)
		}
		if sub == "" {
			return nil
		}
		rel = sub
	} else if oid, sub, ok := tablespaceLink(name); ok {
		if sub != "" {
			return fmt.Errorf("the backup holds %s below a tablespace link: refused", name)
		}
		return x.link(hdr, oid)
	} else if name == "tablespace_map" && hdr.Typeflag == tar.TypeReg {
		return x.tablespaceMap(hdr, r)
	}
	return x.write(t, rel, hdr, r)
}

// tablespaceLink splits a name under pg_tblspc/: the OID and what follows.
func tablespaceLink(name string) (oid, sub string, ok bool) {
	rest, found := strings.CutPrefix(name, "pg_tblspc/")
	if !found {
		return "", "", false
	}
	oid, sub, _ = strings.Cut(rest, "/")
	return oid, sub, oidRE.MatchString(oid)
}

// link makes pg_tblspc/<oid> point to the tablespace's new directory (the
// server sends it as a link, or as a directory when tablespace_map carries
// the links).
func (x *extraction) link(hdr *tar.Header, oid string) error {
	ts := x.tablespaces[oid]
	if ts == nil {
		return fmt.Errorf("the backup links tablespace %s, which its record does not name", oid)
	}
	if hdr.Typeflag != tar.TypeSymlink && hdr.Typeflag != tar.TypeDir {
		return fmt.Errorf("the backup holds pg_tblspc/%s as neither a link nor a directory: refused", oid)
	}
	p := filepath.Join(x.data.stage, "pg_tblspc", oid)
	if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
		return err
	}
	if err := os.Symlink(ts.final, p); err != nil {
		return err
	}
	return x.own(x.data, p, hdr)
}

// write creates a directory or a regular file of t's stage.
func (x *extraction) write(t *target, rel string, hdr *tar.Header, r io.Reader) error {
	p := filepath.Join(t.stage, rel)
	switch hdr.Typeflag {
	case tar.TypeDir:
		if err := os.MkdirAll(p, os.FileMode(hdr.Mode)&0o750|0o700); err != nil {
			return err
		}
	case tar.TypeReg:
		if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
			return err
		}
		if err := writeFile(p, os.FileMode(hdr.Mode)&0o640|0o600, r); err != nil {
			return err
		}
	case tar.TypeSymlink, tar.TypeLink:
		return fmt.Errorf("the backup holds a link %s -> %s outside pg_tblspc: refused", hdr.Name, hdr.Linkname)
	default:
		return fmt.Errorf("the backup holds %s of an unexpected type %q: refused", hdr.Name, hdr.Typeflag)
	}
	return x.own(t, p, hdr)
}

func writeFile(p string, mode os.FileMode, r io.Reader) error {
	f, err := os.OpenFile(p, os.O_WRONLY|os.O_CREATE|os.O_EXCL, mode)
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, r); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// own gives p its owner on the server when running as root, and notes it
// for the target's own directory.
func (x *extraction) own(t *target, p string, hdr *tar.Header) error {
	if !x.root {
		return nil
	}
	if t.uid < 0 {
		t.uid, t.gid = hdr.Uid, hdr.Gid
	}
	return os.Lchown(p, hdr.Uid, hdr.Gid)
}

// tablespaceMap writes tablespace_map with every tablespace's new
// directory: the server makes its pg_tblspc links from it at startup.
func (x *extraction) tablespaceMap(hdr *tar.Header, r io.Reader) error {
	old, err := io.ReadAll(io.LimitReader(r, maxTablespaceMap+1))
	if err != nil {
		return err
	}
	if len(old) > maxTablespaceMap {
		return fmt.Errorf("the backup's tablespace_map is larger than %d bytes", maxTablespaceMap)
	}
	var out bytes.Buffer
	for _, oid := range tablespaceMapOIDs(old) {
		ts := x.tablespaces[oid]
		if ts == nil {
			return fmt.Errorf("the backup's tablespace_map names tablespace %s, which its record does not", oid)
		}
		out.WriteString(oid + " " + escapeMapPath(ts.final) + "\n")
	}
	if !bytes.Equal(out.Bytes(), old) {
		x.warn("tablespace_map was rewritten for the tablespaces' new directories: pg_verifybackup on the restored directory reports that file as changed")
	}
	return x.write(x.data, "tablespace_map", hdr, &out)
}

// tablespaceMapOIDs reads the OID that starts each line of a
// tablespace_map; a path's newlines are escaped with a backslash.
func tablespaceMapOIDs(b []byte) []string {
	var oids []string
	start := true
	for i := 0; i < len(b); i++ {
		if start {
			j := bytes.IndexByte(b[i:], ' ')
			if j < 0 {
				break
			}
			oids = append(oids, string(b[i:i+j]))
			i += j
			start = false
			continue
		}
		switch b[i] {
		case '\\':
			i++
		case '\n':
			start = true
		}
	}
	return oids
}

// escapeMapPath escapes a path as tablespace_map holds it.
func escapeMapPath(p string) string {
	r := strings.NewReplacer(`\`, `\\`, "\n", "\\\n", "\r", "\\\r")
	return r.Replace(p)
}
