package postgres

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"hash/crc32"
	"io"
	"path"
	"sort"
	"strings"

	"remora.dev/remora/drivers"
)

// fileSum is what the tar held of one file.
type fileSum struct {
	size int64
	sum  string // hex, in the manifest's algorithm and byte order
}

// maxProblems bounds the files a failed check names.
const maxProblems = 10

// CheckBaseTar reads a physical backup's tar to its end and checks it
// against the backup_manifest it ends with: the manifest's own SHA-256,
// and every file it lists present with its size and checksum, and no file
// of the data directory that it does not list (but in pg_wal/, which it
// lists only in part: the object's SHA-256 covers the rest). Memory grows with the
// number of files, never with their size: each file is hashed as it passes.
func CheckBaseTar(ctx context.Context, obj drivers.Object, r io.Reader) error {
	algo := obj.Meta[MetaManifestChecksum]
	files := map[string]fileSum{}
	tr := tar.NewReader(r)
	var problems []string
	seen := false
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		hdr, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return fmt.Errorf("not a readable tar: %w", err)
		}
		name := path.Clean(hdr.Name)
		switch {
		case hdr.Typeflag != tar.TypeReg:
		case name == ManifestEntry:
			seen = true
			if problems, err = checkManifest(tr, files); err != nil {
				return err
			}
		default:
			h, err := newFileHash(algo)
			if err != nil {
				return err
			}
			n, err := io.Copy(h, tr)
			if err != nil {
				return fmt.Errorf("read %s: %w", name, err)
			}
			files[manifestPath(name)] = fileSum{size: n, sum: h.sum()}
		}
	}
	if !seen {
		return errors.New("the tar holds no backup_manifest")
	}
	for _, name := range sortedKeys(files) {
		if !strings.HasPrefix(name, "pg_wal/") {
			problems = append(problems, name+" is in the backup but not in its backup_manifest")
		}
	}
	return problemsError(problems)
}

// manifestPath is the name the backup_manifest gives a file of the tar: a
// tablespace's files are under pg_tblspc/<oid>/ there.
func manifestPath(name string) string {
	if rest, ok := strings.CutPrefix(name, TablespacePrefix); ok {
		return "pg_tblspc/" + rest
	}
	return name
}

func sortedKeys(m map[string]fileSum) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

func problemsError(problems []string) error {
	switch {
	case len(problems) == 0:
		return nil
	case len(problems) > maxProblems:
		problems = append(problems[:maxProblems], fmt.Sprintf("and %d more", len(problems)-maxProblems))
	}
	return errors.New("the base backup does not match its backup_manifest: " + strings.Join(problems, "; "))
}

// manifestFile is one entry of the backup_manifest's Files.
type manifestFile struct {
	Path        string `json:"Path"`
	EncodedPath string `json:"Encoded-Path"`
	Size        int64  `json:"Size"`
	Algorithm   string `json:"Checksum-Algorithm"`
	Checksum    string `json:"Checksum"`
}

// checkManifest reads the backup_manifest from r, checks its own checksum,
// and checks each file it lists against files, removing it from there. It
// returns the problems found; an error if the manifest cannot be read.
func checkManifest(r io.Reader, files map[string]fileSum) ([]string, error) {
	lh := &linesHash{h: sha256.New()}
	dec := json.NewDecoder(io.TeeReader(r, lh))
	var problems []string
	var declared string
	err := walkManifest(dec, func(f manifestFile) {
		if p := checkFile(f, files); p != "" {
			problems = append(problems, p)
		}
	}, &declared)
	if err != nil {
		return nil, fmt.Errorf("the backup_manifest cannot be read: %w", err)
	}
	if _, err := io.Copy(lh, r); err != nil { // what follows the object, if anything
		return nil, fmt.Errorf("read the backup_manifest: %w", err)
	}
	if got := hex.EncodeToString(lh.h.Sum(nil)); got != declared {
		problems = append([]string{fmt.Sprintf("the backup_manifest's own checksum is %s, it says %s", got, declared)}, problems...)
	}
	return problems, nil
}

// checkFile compares one manifest entry with what the tar held.
func checkFile(f manifestFile, files map[string]fileSum) string {
	name := f.Path
	if f.EncodedPath != "" {
		b, err := hex.DecodeString(f.EncodedPath)
		if err != nil {
			return fmt.Sprintf("the backup_manifest has a bad Encoded-Path %q", f.EncodedPath)
		}
		name = string(b)
	}
	got, ok := files[name]
	delete(files, name)
	switch {
	case !ok:
		return name + " is in the backup_manifest but missing from the backup"
	case got.size != f.Size:
		return fmt.Sprintf("%s has %d bytes, the backup_manifest says %d", name, got.size, f.Size)
	case f.Algorithm != "" && f.Algorithm != "NONE" && !strings.EqualFold(got.sum, f.Checksum):
		return fmt.Sprintf("%s has %s checksum %s, the backup_manifest says %s", name, f.Algorithm, got.sum, f.Checksum)
	}
	return ""
}

// walkManifest decodes the manifest's object, calling file for each entry
// of Files and setting declared to its Manifest-Checksum; other members
// (WAL-Ranges, System-Identifier, ...) are read and passed over.
func walkManifest(dec *json.Decoder, file func(manifestFile), declared *string) error {
	if err := expectDelim(dec, '{'); err != nil {
		return err
	}
	for dec.More() {
		t, err := dec.Token()
		if err != nil {
			return err
		}
		switch t {
		case "Files":
			if err := expectDelim(dec, '['); err != nil {
				return err
			}
			for dec.More() {
				var f manifestFile
				if err := dec.Decode(&f); err != nil {
					return err
				}
				file(f)
			}
			if err := expectDelim(dec, ']'); err != nil {
				return err
			}
		case "Manifest-Checksum":
			if err := dec.Decode(declared); err != nil {
				return err
			}
		default:
			var skip json.RawMessage
			if err := dec.Decode(&skip); err != nil {
				return err
			}
		}
	}
	return expectDelim(dec, '}')
}

func expectDelim(dec *json.Decoder, want json.Delim) error {
	t, err := dec.Token()
	if err != nil {
		return err
	}
	if t != want {
		return fmt.Errorf("want %q, got %v", want, t)
	}
	return nil
}

// linesHash hashes what is written to it up to its second-last newline,
// the part of a backup_manifest its Manifest-Checksum covers (the last line
// holds the checksum itself). It holds back only the bytes after the last
// newline but one.
type linesHash struct {
	h    hash.Hash
	held []byte
}

func (l *linesHash) Write(p []byte) (int, error) {
	l.held = append(l.held, p...)
	last := bytes.LastIndexByte(l.held, '\n')
	if last <= 0 {
		return len(p), nil
	}
	if prev := bytes.LastIndexByte(l.held[:last], '\n'); prev >= 0 {
		l.h.Write(l.held[:prev+1])
		l.held = append(l.held[:0], l.held[prev+1:]...)
	}
	return len(p), nil
}

// fileHash is a file's checksum in a backup_manifest's algorithm.
type fileHash struct {
	hash.Hash
	crc bool
}

func newFileHash(algo string) (*fileHash, error) {
	switch strings.ToUpper(algo) {
	case "CRC32C":
		return &fileHash{Hash: crc32.New(crc32.MakeTable(crc32.Castagnoli)), crc: true}, nil
	case "SHA256":
		return &fileHash{Hash: sha256.New()}, nil
	case "SHA224":
		return &fileHash{Hash: sha256.New224()}, nil
	case "SHA384":
		return &fileHash{Hash: sha512.New384()}, nil
	case "SHA512":
		return &fileHash{Hash: sha512.New()}, nil
	}
	return nil, fmt.Errorf("the backup records manifest checksums %q, which this remora does not know", algo)
}

// sum is the checksum as PostgreSQL writes it: a CRC-32C as the bytes of
// the integer in the server's (little-endian) order.
func (f *fileHash) sum() string {
	if f.crc {
		var b [4]byte
		binary.LittleEndian.PutUint32(b[:], f.Hash.(hash.Hash32).Sum32())
		return hex.EncodeToString(b[:])
	}
	return hex.EncodeToString(f.Hash.Sum(nil))
}
