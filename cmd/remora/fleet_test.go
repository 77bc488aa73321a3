package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"io"
	"strings"
	"testing"
	"time"

	"remora.dev/remora/drivers"
	"remora.dev/remora/repo"
	"remora.dev/remora/storage/file"
)

// genDriver dumps a few random bytes as one database.
type genDriver struct{}

func (genDriver) Plan(context.Context) (*drivers.Plan, error) {
	return &drivers.Plan{ServerVersion: "gen 1", Objects: []drivers.Object{{Name: "databases/app", Kind: drivers.KindDatabase, Database: "app", Format: "bytes"}}}, nil
}

func (genDriver) Dump(_ context.Context, _ drivers.Object, w io.Writer) error {
	_, err := io.CopyN(w, rand.Reader, 1024)
	return err
}

func (genDriver) CheckRestore(context.Context, []drivers.Object, drivers.RestoreOptions) error {
	return nil
}

func (genDriver) Restore(context.Context, drivers.Object, io.Reader, drivers.RestoreOptions) error {
	return nil
}

// TestFleetCommand: the table names every workload and what is damaged;
// --json gives the same for scripts; --max-age exits 1 and says which
// workload is too old, and only that one.
func TestFleetCommand(t *testing.T) {
	dir := t.TempDir()
	st := file.New(dir)
	ctx := context.Background()
	now := time.Now().UTC()
	backup := func(ns, wl, driver string, ago time.Duration) *repo.Manifest {
		at := now.Add(-ago)
		res, err := repo.Backup(ctx, repo.BackupOptions{Scope: repo.Scope{Namespace: ns, Workload: wl, Driver: driver}, Driver: genDriver{},
			Now: func() time.Time { return at }, Destinations: []repo.Destination{{Storage: st}}})
		if err != nil {
			t.Fatal(err)
		}
		return res.Manifest
	}
	backup("shop", "db-0", "postgres", time.Hour)
	backup("shop", "cache-0", "redis", 72*time.Hour)
	backup("billing", "ledger-0", "mysql", 3*time.Hour)
	damaged := backup("billing", "ledger-0", "mysql", time.Hour)
	if _, err := st.Put(ctx, damaged.Dir()+repo.ManifestName, strings.NewReader("{")); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		args     []string
		wantErr  string // "" for none
		contains []string
	}{
		{nil, "", []string{"billing    ledger-0", "shop       cache-0", "shop       db-0", "billing/ledger-0 mysql logical: DAMAGED " + damaged.ID}},
		{[]string{"--max-age", "26h"}, "1 of 3 are older than --max-age 26h or could not be read: shop/cache-0 redis logical: last good backup", []string{"STALE last good backup"}},
		{[]string{"--json", "--max-age", "4d"}, "", []string{`"workload": "cache-0"`, `"state": "damaged"`}},
		{[]string{"--max-age", "soon"}, "--max-age \"soon\": want a positive duration", nil},
	} {
		var stdout, stderr bytes.Buffer
		err := run(ctx, append([]string{"fleet", "--storage", "file://" + dir}, tc.args...), &stdout, &stderr)
		if tc.wantErr == "" && err != nil || tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)) {
			t.Errorf("%v: error %v, want %q", tc.args, err, tc.wantErr)
		}
		for _, c := range tc.contains {
			if !strings.Contains(stdout.String(), c) {
				t.Errorf("%v: output lacks %q:\n%s", tc.args, c, stdout.String())
			}
		}
		if len(tc.args) > 0 && tc.args[0] == "--json" {
			var r struct{ Workloads []map[string]any }
			if err := json.Unmarshal(stdout.Bytes(), &r); err != nil || len(r.Workloads) != 3 {
				t.Errorf("--json: %v, %d workloads", err, len(r.Workloads))
			}
		}
	}
}
