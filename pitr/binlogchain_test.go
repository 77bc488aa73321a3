package pitr

import (
	"strings"
	"testing"
	"time"

	"remora.dev/remora/drivers/mysql"
	"remora.dev/remora/repo"
)

// piece lists a piece as ListLogs would: "mysql-bin.000001/0-100" or with
// ".last", created at 1000 unless the file says "@created".
func pieces(specs ...string) []repo.LogEntry {
	var out []repo.LogEntry
	for _, s := range specs {
		file, rng, _ := strings.Cut(s, "/")
		created := uint32(1000)
		if f, c, ok := strings.Cut(file, "@"); ok {
			file = f
			t, _ := time.Parse("15:04", c)
			created = uint32(t.Hour()*60 + t.Minute())
		}
		last := strings.HasSuffix(rng, ".last")
		a, b, _ := strings.Cut(strings.TrimSuffix(rng, ".last"), "-")
		var start, end uint64
		for _, c := range a {
			start = start*10 + uint64(c-'0')
		}
		for _, c := range b {
			end = end*10 + uint64(c-'0')
		}
		out = append(out, repo.LogEntry{System: "1", Series: BinlogSeries(file, created), StoredName: PieceName(start, end, last), Name: PieceName(start, end, last)})
	}
	return out
}

func describeChain(c BinlogChain) string {
	var parts []string
	for _, s := range c.Steps {
		p := s.File[len(s.File)-1:] + ":" + itoa(s.Start+s.Skip) + "-" + itoa(s.End)
		if s.Last {
			p += "."
		}
		parts = append(parts, p)
	}
	out := strings.Join(parts, " ")
	if c.Gap != nil {
		out += " GAP " + c.Gap.From + ">" + c.Gap.To
	}
	return out
}

func itoa(n uint64) string {
	if n == 0 {
		return "0"
	}
	var b []byte
	for ; n > 0; n /= 10 {
		b = append([]byte{byte('0' + n%10)}, b...)
	}
	return string(b)
}

// TestBinlogChain: the chain from a dump's position reads each file from
// its first byte through overlapping pieces, follows a file's end into the
// next file, and stops at a hole, a missing end or a missing file, naming
// the gap when something lies beyond it.
func TestBinlogChain(t *testing.T) {
	at := mysql.BinlogPosition{File: "mysql-bin.000001", Pos: 50}
	for _, tc := range []struct {
		name    string
		archive []string
		want    string
	}{
		{"one open file", []string{"mysql-bin.000001/0-100", "mysql-bin.000001/100-180"}, "1:0-100 1:100-180"},
		{"into the next file", []string{"mysql-bin.000001/0-100", "mysql-bin.000001/100-180.last", "mysql-bin.000002/0-60"}, "1:0-100 1:100-180. 2:0-60"},
		{"overlap after a resume", []string{"mysql-bin.000001/0-100", "mysql-bin.000001/0-150", "mysql-bin.000001/120-200"}, "1:0-150 1:150-200"},
		{"an end marker of no bytes", []string{"mysql-bin.000001/0-100", "mysql-bin.000001/100-100.last", "mysql-bin.000002/0-30"}, "1:0-100 2:0-30"},
		{"a hole", []string{"mysql-bin.000001/0-100", "mysql-bin.000001/120-200"}, "1:0-100"},
		{"a hole before the position", []string{"mysql-bin.000001/0-40", "mysql-bin.000001/60-200"}, "1:0-40 GAP mysql-bin.000001@40>mysql-bin.000001@50"},
		{"a file never ended", []string{"mysql-bin.000001/0-100", "mysql-bin.000002/0-60"}, "1:0-100 GAP mysql-bin.000001@100>mysql-bin.000002@0"},
		{"a file missing", []string{"mysql-bin.000001/0-100.last", "mysql-bin.000003/0-60"}, "1:0-100. GAP mysql-bin.000001@100>mysql-bin.000003@0"},
		{"a file ended, the next not stored yet", []string{"mysql-bin.000001/0-100.last"}, "1:0-100."},
	} {
		c, ok := binlogsOf(pieces(tc.archive...)).From(at, time.Unix(5000, 0))
		if !ok {
			t.Errorf("%s: the position's file is not found", tc.name)
			continue
		}
		if got := describeChain(c); got != tc.want {
			t.Errorf("%s:\n got %s\nwant %s", tc.name, got, tc.want)
		}
	}
}

// TestBinlogChainPicksTheFileOfTheDump: a server made anew reuses file
// names; the dump's file is the one opened last before the dump ended.
func TestBinlogChainPicksTheFileOfTheDump(t *testing.T) {
	b := binlogsOf(pieces("mysql-bin.000001@00:10/0-100", "mysql-bin.000001@00:30/0-70"))
	for _, tc := range []struct {
		dumped uint32
		want   string
		ok     bool
	}{{5, "", false}, {20, "1:0-100", true}, {40, "1:0-70", true}} {
		c, ok := b.From(mysql.BinlogPosition{File: "mysql-bin.000001", Pos: 4}, time.Unix(int64(tc.dumped), 0))
		if ok != tc.ok || describeChain(c) != tc.want {
			t.Errorf("dumped at %d: %q %v, want %q %v", tc.dumped, describeChain(c), ok, tc.want, tc.ok)
		}
	}
}

// TestBinlogEnd: streaming resumes where the newest file's unbroken run of
// pieces ends, and knows when that file was finished.
func TestBinlogEnd(t *testing.T) {
	for _, tc := range []struct {
		archive []string
		want    mysql.Resume
		ok      bool
	}{
		{nil, mysql.Resume{}, false},
		{[]string{"mysql-bin.000001/0-100", "mysql-bin.000001/100-300"}, mysql.Resume{System: "1", File: "mysql-bin.000001", Created: 1000, End: 300}, true},
		{[]string{"mysql-bin.000001/0-100.last", "mysql-bin.000002/0-40", "mysql-bin.000002/80-90"}, mysql.Resume{System: "1", File: "mysql-bin.000002", Created: 1000, End: 40}, true},
		{[]string{"mysql-bin.000004/0-100.last"}, mysql.Resume{System: "1", File: "mysql-bin.000004", Created: 1000, End: 100, Last: true}, true},
	} {
		got, ok := binlogsOf(pieces(tc.archive...)).end()
		if ok != tc.ok || got != tc.want {
			t.Errorf("%v: %+v %v, want %+v %v", tc.archive, got, ok, tc.want, tc.ok)
		}
	}
}
