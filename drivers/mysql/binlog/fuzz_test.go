package binlog

import (
	"bytes"
	"testing"
)

// FuzzVerifyFile: whatever a storage hands back, VerifyFile returns an
// error or a summary; it never panics, and what it accepts starts with the
// magic and ends where its last event does.
func FuzzVerifyFile(f *testing.F) {
	f.Add(Magic)
	f.Add(append(append([]byte{}, Magic...), make([]byte, 19)...))
	f.Add([]byte("not a binlog"))
	f.Fuzz(func(t *testing.T, data []byte) {
		sum, err := VerifyFile(bytes.NewReader(data))
		if err != nil {
			return
		}
		if !bytes.HasPrefix(data, Magic) || sum.End != uint64(len(data)) {
			t.Fatalf("accepted %d bytes ending at %d", len(data), sum.End)
		}
	})
}
