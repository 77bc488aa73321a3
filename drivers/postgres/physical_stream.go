package postgres

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"path"
	"regexp"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"
)

// copyOut reads the COPY OUT stream of BASE_BACKUP (PostgreSQL 15+): every
// CopyData message starts with its type: 'n' a new archive (its name and
// the tablespace's location), 'd' data of the archive or of the manifest,
// 'p' progress, 'm' the manifest follows.
func (s *baseStream) copyOut(ctx context.Context) error {
	msg, err := s.conn.ReceiveMessage(ctx)
	if err != nil {
		return fmt.Errorf("postgres: base backup: %w", err)
	}
	switch m := msg.(type) {
	case *pgproto3.CopyOutResponse:
	case *pgproto3.ErrorResponse:
		return baseBackupError(pgconn.ErrorResponseToPgError(m))
	default:
		return fmt.Errorf("postgres: base backup: unexpected %T where the copy should start (a server before PostgreSQL 15?)", msg)
	}
	for {
		msg, err := s.conn.ReceiveMessage(ctx)
		if err != nil {
			return fmt.Errorf("postgres: base backup: %w", err)
		}
		switch m := msg.(type) {
		case *pgproto3.CopyData:
			if err := s.copyData(m.Data); err != nil {
				return err
			}
		case *pgproto3.CopyDone:
			return s.endArchive(nil)
		case *pgproto3.NoticeResponse:
		case *pgproto3.ErrorResponse:
			return baseBackupError(pgconn.ErrorResponseToPgError(m))
		default:
			return fmt.Errorf("postgres: base backup: unexpected %T in the copy", msg)
		}
	}
}

var archiveNameRE = regexp.MustCompile(`^([0-9]+)\.tar$`)

// copyData handles one typed CopyData message.
func (s *baseStream) copyData(data []byte) error {
	if len(data) == 0 {
		return errors.New("postgres: base backup: an empty CopyData message")
	}
	switch data[0] {
	case 'n':
		name, rest, _ := bytes.Cut(data[1:], []byte{0})
		location, _, _ := bytes.Cut(rest, []byte{0})
		return s.beginArchive(string(name), string(location))
	case 'd':
		switch {
		case s.manifest != nil:
			if s.manifest.Len()+len(data)-1 > maxManifest {
				return fmt.Errorf("postgres: base backup: the backup_manifest is larger than %d bytes", maxManifest)
			}
			s.manifest.Write(data[1:])
			return nil
		case s.archive != nil:
			return s.archive.write(data[1:])
		}
		return errors.New("postgres: base backup: data before any archive")
	case 'm':
		if err := s.endArchive(nil); err != nil {
			return err
		}
		s.manifest = &bytes.Buffer{}
	case 'p':
	default:
		return fmt.Errorf("postgres: base backup: unknown CopyData type %q (a newer server protocol?)", data[0])
	}
	return nil
}

// beginArchive ends the archive being received and starts the next: the
// data directory's (base.tar) at the tar's root, a tablespace's
// (<oid>.tar) under TablespacePrefix<oid>/.
func (s *baseStream) beginArchive(name, location string) error {
	if err := s.endArchive(nil); err != nil {
		return err
	}
	prefix := ""
	if name != BaseTarName {
		m := archiveNameRE.FindStringSubmatch(name)
		if m == nil {
			return fmt.Errorf("postgres: base backup: unexpected archive %q", name)
		}
		prefix = TablespacePrefix + m[1] + "/"
		s.tablespaces[m[1]] = location
	}
	s.archive = startArchiveCopy(s.tw, prefix)
	return nil
}

// endArchive waits for the archive being received to be copied into the
// tar; with cause, it stops it.
func (s *baseStream) endArchive(cause error) error {
	a := s.archive
	if a == nil {
		return nil
	}
	s.archive = nil
	return a.close(cause)
}

// writeManifest writes the backup_manifest as the tar's last entry and
// ends the tar.
func (s *baseStream) writeManifest() error {
	if s.manifest == nil {
		return errors.New("postgres: base backup: the server sent no backup_manifest")
	}
	hdr := &tar.Header{Name: ManifestEntry, Mode: 0o600, Size: int64(s.manifest.Len()), ModTime: time.Now(), Typeflag: tar.TypeReg}
	if err := s.tw.WriteHeader(hdr); err != nil {
		return err
	}
	if _, err := s.tw.Write(s.manifest.Bytes()); err != nil {
		return err
	}
	return s.tw.Close()
}

// archiveCopy copies one archive of the server into the tar, entry by
// entry, under a prefix: the server's data goes into a pipe that a
// goroutine reads as a tar.
type archiveCopy struct {
	pw   *io.PipeWriter
	done chan error
}

func startArchiveCopy(tw *tar.Writer, prefix string) *archiveCopy {
	pr, pw := io.Pipe()
	a := &archiveCopy{pw: pw, done: make(chan error, 1)}
	go func() {
		err := copyEntries(tw, tar.NewReader(pr), prefix)
		pr.CloseWithError(err)
		a.done <- err
	}()
	return a
}

// write passes data on; it returns once the copy has taken all of it, so
// the caller may reuse data.
func (a *archiveCopy) write(data []byte) error {
	if _, err := a.pw.Write(data); err != nil {
		return fmt.Errorf("postgres: base backup: %w", err)
	}
	return nil
}

func (a *archiveCopy) close(cause error) error {
	a.pw.CloseWithError(cause)
	if err := <-a.done; err != nil {
		return fmt.Errorf("postgres: base backup: %w", err)
	}
	return cause
}

// copyEntries copies every entry of tr into tw, its name under prefix.
func copyEntries(tw *tar.Writer, tr *tar.Reader, prefix string) error {
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return fmt.Errorf("read the server's archive: %w", err)
		}
		name := path.Clean(hdr.Name)
		if hdr.Typeflag == tar.TypeDir {
			name += "/"
		}
		if strings.HasPrefix(name, "../") || strings.HasPrefix(name, "/") {
			return fmt.Errorf("the server's archive holds a bad name %q", hdr.Name)
		}
		hdr.Name, hdr.Format = prefix+name, tar.FormatUnknown
		hdr.PAXRecords = nil
		if err := tw.WriteHeader(hdr); err != nil {
			return err
		}
		if _, err := io.Copy(tw, tr); err != nil {
			return err
		}
	}
}
