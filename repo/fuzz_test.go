package repo

import (
	"encoding/json"
	"testing"
)

// FuzzManifest: decoding any manifest.json never panics, and a manifest that
// decodes survives a round trip unchanged.
func FuzzManifest(f *testing.F) {
	f.Add([]byte(`{"format":1,"id":"20261124T230630Z","driver":"postgres","objects":[{"key":"globals.sql.zst","size":10,"sha256":"00"}]}`))
	f.Add([]byte(`{"format":99}`))
	f.Add([]byte(`{"id":"../../etc","objects":[{"key":"../x"}]}`))
	f.Add([]byte(`null`))
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := decodeManifest(b)
		if err != nil {
			return
		}
		again, err := json.Marshal(m)
		if err != nil {
			t.Fatal(err)
		}
		m2, err := decodeManifest(again)
		if err != nil {
			t.Fatalf("re-encoded manifest does not decode: %v\n%s", err, again)
		}
		if b1, _ := json.Marshal(m2); string(b1) != string(again) {
			t.Fatalf("round trip changed the manifest:\n%s\n%s", again, b1)
		}
	})
}
