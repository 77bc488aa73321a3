package pitr

import (
	"context"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"remora.dev/remora/repo"
	"remora.dev/remora/storage"
)

// replacing is a storage in which the agent replaces a partial segment by
// a larger one just as a restore opens the first one's record.
type replacing struct {
	storage.Storage
	once    sync.Once
	replace func()
}

func (r *replacing) Open(ctx context.Context, key string) (io.ReadCloser, error) {
	if strings.Contains(key, ".partial.") && strings.HasSuffix(key, ".json") {
		hit := false
		r.once.Do(func() { r.replace(); hit = true })
		if hit {
			return nil, fs.ErrNotExist
		}
	}
	return r.Storage.Open(ctx, key)
}

// TestRecoverWhileAPartialIsReplaced: a partial replaced between the
// listing and the read (the agent goes on streaming during a restore) is
// not a failure: the archive is read again and the newer partial used.
func TestRecoverWhileAPartialIsReplaced(t *testing.T) {
	ctx := context.Background()
	st, err := storage.Open(ctx, "file://"+t.TempDir(), storage.Options{})
	if err != nil {
		t.Fatal(err)
	}
	scope := repo.Scope{Namespace: "shop", Workload: "db-0", Driver: "postgres"}
	arch := &repo.LogArchive{Scope: scope, Storages: []storage.Storage{st}}
	store := func(f repo.LogFile) {
		t.Helper()
		if _, err := arch.Store(ctx, f); err != nil {
			t.Fatal(err)
		}
	}
	store(repo.LogFile{System: "1", Series: "00000001", Name: "000000010000000000000001", Data: make([]byte, segSize)})
	old := repo.LogFile{System: "1", Series: "00000001", Name: "000000010000000000000002", Partial: true, Data: []byte("first flush")}
	store(old)
	newer := repo.LogFile{System: "1", Series: "00000001", Name: "000000010000000000000002", Partial: true, Data: []byte("first flush, and more")}
	r := &replacing{Storage: st, replace: func() {
		store(newer)
		if err := arch.Delete(ctx, st, old.System, old.Series, old.StoredName()); err != nil {
			t.Fatal(err)
		}
	}}
	dir := t.TempDir()
	os.Mkdir(filepath.Join(dir, "pg_wal"), 0o700)
	base := Base{ID: "b", System: "1", Timeline: 1, Start: segSize + 40, Stop: segSize + 400, SegSize: segSize}
	rec, err := Recover(ctx, r, scope, repo.Trust{}, nil, base, dir, Target{Latest: true})
	if err != nil {
		t.Fatal(err)
	}
	if rec.Last != newer.StoredName() {
		t.Errorf("recovered up to %s, want the newer partial %s", rec.Last, newer.StoredName())
	}
}
