package mysql

import (
	"bytes"
	"strings"
	"testing"
)

// TestNewGTIDs: the lines that set a transaction's GTID sequence number
// go, and nothing else, however the tool's output is cut into writes.
func TestNewGTIDs(t *testing.T) {
	in := strings.Join([]string{
		"# at 1234",
		"/*M!100001 SET @@session.gtid_domain_id=0*//*!*/;",
		"/*M!100001 SET @@session.server_id=1*//*!*/;",
		"/*M!100001 SET @@session.gtid_seq_no=81*//*!*/;",
		"START TRANSACTION",
		"/*M!100001 SET @@session.gtid_seq_no=82*//*!*/; -- not alone",
		"/*M!100001 SET @@session.gtid_seq_no=" + strings.Repeat("9", 200) + "*//*!*/;",
		"BINLOG '",
		"mtUNaxMBAAAALwAAAPoCAAAAABIAAAAAAAEABXNob3AyAAF0AAID/AECAsMOZP8=",
		"'/*!*/;",
		"/*M!100001 SET @@session.gtid_seq_no=83*//*!*/;",
		"/*M!100001 SET @@sess",
	}, "\n")
	want := strings.ReplaceAll(strings.ReplaceAll(in, "/*M!100001 SET @@session.gtid_seq_no=81*//*!*/;\n", ""),
		"/*M!100001 SET @@session.gtid_seq_no=83*//*!*/;\n", "")
	for _, step := range []int{1, 3, 17, 4096} {
		var out bytes.Buffer
		f := newGTIDFilter(&out)
		for i := 0; i < len(in); i += step {
			if _, err := f.Write([]byte(in[i:min(i+step, len(in))])); err != nil {
				t.Fatal(err)
			}
		}
		if err := f.Close(); err != nil {
			t.Fatal(err)
		}
		if out.String() != want {
			t.Errorf("writes of %d:\n%s\nwant:\n%s", step, out.String(), want)
		}
	}
}
