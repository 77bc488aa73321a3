package backup

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
	"time"

	"remora.dev/remora/agent/storage"
)

// ErrCorrupt is wrapped by every error about stored data that does not match
// its manifest.
var ErrCorrupt = errors.New("backup is corrupt")

// Verify downloads every object of a backup and checks its size and SHA-256
// against the manifest; they cover the stored bytes, so no key is needed. If
// the backup is not encrypted, or ids can decrypt it, it also checks that every
// object decrypts and decompresses to the recorded size. It records the result
// beside the manifest (unless record is false) and returns an error wrapping
// ErrCorrupt if anything does not match.
func Verify(ctx context.Context, st storage.Storage, m *Manifest, ids *Identities, record bool) error {
	cod, err := codecByName(m.Compression)
	if err != nil {
		return err
	}
	var problems []string
	for _, o := range m.Objects {
		if err := verifyObject(ctx, st, cod, m, ids, o); err != nil {
			if !errors.Is(err, ErrCorrupt) {
				return err // could not check: no verdict
			}
			problems = append(problems, err.Error())
		}
	}
	if record {
		v := Verification{Time: time.Now().UTC(), OK: len(problems) == 0, Problems: problems}
		b, _ := json.MarshalIndent(v, "", "  ")
		if _, err := st.Put(ctx, m.dir()+VerifiedName, bytes.NewReader(b)); err != nil && len(problems) == 0 {
			return fmt.Errorf("backup %s is good, but recording that failed: %w", m.ID, err)
		}
	}
	if len(problems) > 0 {
		return errors.Join(problems2errs(problems)...)
	}
	return nil
}

func problems2errs(ps []string) []error {
	errs := make([]error, len(ps))
	for i, p := range ps {
		errs[i] = fmt.Errorf("%w: %s", ErrCorrupt, p)
	}
	return errs
}

func verifyObject(ctx context.Context, st storage.Storage, cod codec, m *Manifest, ids *Identities, o ObjectRecord) error {
	r, err := st.Open(ctx, m.dir()+o.Key)
	if isNotExist(err) {
		return fmt.Errorf("%w: %s is missing", ErrCorrupt, o.Key)
	}
	if err != nil {
		return err
	}
	defer r.Close()
	cr := newCheckedReader(r, o, 0)
	deep := m.Encryption == nil || ids != nil
	var rawN int64
	var decodeErr error
	if deep {
		decodeErr = func() error {
			plain, err := decrypter(m, ids, cr)
			if err != nil {
				return err
			}
			dr, err := cod.newReader(plain)
			if err != nil {
				return err
			}
			defer dr.Close()
			rawN, err = io.Copy(io.Discard, dr)
			return err
		}()
	}
	// Read what decompression left, so the checksum has seen every byte.
	if _, err := io.Copy(io.Discard, cr); err != nil {
		return objErr(o, err)
	}
	switch {
	case errors.Is(decodeErr, ErrNoIdentity):
		return decodeErr
	case decodeErr != nil:
		return fmt.Errorf("%w: %s matches its checksum but does not decrypt or decompress: %v", ErrCorrupt, o.Key, decodeErr)
	case deep && rawN != o.RawSize:
		return fmt.Errorf("%w: %s decompresses to %d bytes, the manifest says %d", ErrCorrupt, o.Key, rawN, o.RawSize)
	}
	return nil
}

func objErr(o ObjectRecord, err error) error {
	if errors.Is(err, ErrCorrupt) {
		return err
	}
	return fmt.Errorf("read %s: %w", o.Key, err)
}

// checkedReader passes an object's stored bytes through, computing their
// SHA-256. It holds back the last hold bytes until the end of the object has
// been read and matched the manifest: a reader of a corrupt or truncated
// object gets an error wrapping ErrCorrupt before it has seen the whole
// stream, so a tool loading it cannot complete and commit.
type checkedReader struct {
	src  io.Reader
	o    ObjectRecord
	hash hash.Hash
	n    int64
	hold int
	buf  []byte // buf[r:w] was read from src and not yet given out
	r, w int
	eof  bool // src is at its end and matched
	err  error
}

func newCheckedReader(src io.Reader, o ObjectRecord, hold int) *checkedReader {
	return &checkedReader{src: src, o: o, hash: sha256.New(), hold: hold, buf: make([]byte, hold+64<<10)}
}

func (c *checkedReader) Read(p []byte) (int, error) {
	if c.err != nil {
		return 0, c.err
	}
	for !c.eof && c.w-c.r <= c.hold {
		if c.w == len(c.buf) {
			c.w = copy(c.buf, c.buf[c.r:c.w])
			c.r = 0
		}
		n, err := c.src.Read(c.buf[c.w:])
		c.hash.Write(c.buf[c.w : c.w+n])
		c.w += n
		c.n += int64(n)
		if c.n > c.o.Size {
			c.err = fmt.Errorf("%w: %s is longer than the %d bytes in the manifest", ErrCorrupt, c.o.Key, c.o.Size)
			return 0, c.err
		}
		if err == io.EOF {
			if c.n != c.o.Size {
				c.err = fmt.Errorf("%w: %s has %d bytes, the manifest says %d", ErrCorrupt, c.o.Key, c.n, c.o.Size)
				return 0, c.err
			}
			if got := hex.EncodeToString(c.hash.Sum(nil)); got != c.o.SHA256 {
				c.err = fmt.Errorf("%w: %s has SHA-256 %s, the manifest says %s", ErrCorrupt, c.o.Key, got, c.o.SHA256)
				return 0, c.err
			}
			c.eof = true
		} else if err != nil {
			c.err = err
			return 0, err
		}
	}
	avail := c.w - c.r
	if !c.eof {
		avail -= c.hold
	}
	if avail == 0 {
		return 0, io.EOF
	}
	n := copy(p, c.buf[c.r:c.r+avail])
	c.r += n
	return n, nil
}
