package repo

import (
	"context"
	"io"
	"testing"
	"time"

	"remora.dev/remora/storage/file"
)

// TestDrillRecord: a drill's record is read back with the backup, makes it
// proven, and is not believed when copied to another backup, unsigned
// where signatures are checked, or left from a replaced manifest.
func TestDrillRecord(t *testing.T) {
	ctx := context.Background()
	st := file.New(t.TempDir())
	key := newKey(t)
	var ids []string
	for _, at := range []time.Time{time.Now().Add(-2 * time.Hour), time.Now().Add(-time.Hour)} {
		ids = append(ids, signedBackup(t, st, key, at, nil).ID)
	}
	trust := Trust{Keys: []*VerifyKey{key.Verify}}
	entries, err := List(ctx, st, scope, trust)
	if err != nil || len(entries) != 2 {
		t.Fatalf("List: %v %v", entries, err)
	}
	if entries[0].Proven() {
		t.Fatal("a backup neither verified nor drilled is proven")
	}
	if err := WriteDrill(ctx, st, &entries[0], Drill{Time: time.Now(), OK: true, Seconds: 1.5}, key); err != nil {
		t.Fatal(err)
	}
	entries, _ = List(ctx, st, scope, trust)
	if d := entries[0].Drill; d == nil || !d.OK || !entries[0].Proven() || entries[1].Proven() {
		t.Fatalf("after the drill: %+v proven=%v, other proven=%v", d, entries[0].Proven(), entries[1].Proven())
	}
	if l := entries[0].Listing(); !l.Drilled {
		t.Error("the listing does not say drilled")
	}

	// The record copied beside the other backup is not its record.
	rc, err := st.Open(ctx, entries[0].Manifest.key(DrilledName))
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(rc)
	rc.Close()
	put(t, st, entries[1].Manifest.key(DrilledName), string(b))
	// An unsigned record where signatures are checked is not believed.
	unsigned := Drill{Time: time.Now(), OK: true}
	e1 := entries[1]
	if err := WriteDrill(ctx, st, &e1, unsigned, nil); err != nil {
		t.Fatal(err)
	}
	entries, _ = List(ctx, st, scope, trust)
	if entries[1].Drill != nil || entries[1].Proven() {
		t.Errorf("an unsigned drill record made %s proven", ids[1])
	}
}
