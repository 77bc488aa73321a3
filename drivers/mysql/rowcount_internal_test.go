package mysql

import (
	"maps"
	"testing"
)

// TestRowCounter: rows are counted as mysqldump and mariadb-dump write
// them, whatever the strings in them hold.
func TestRowCounter(t *testing.T) {
	for _, tc := range []struct {
		name, dump string
		want       map[string]string
	}{
		{"one line", "CREATE TABLE `a` (\n  `id` int\n);\nINSERT INTO `a` VALUES (1,'it\\'s (1),\\n('),(2,'x');\n",
			map[string]string{"check.rows.`a`": "2"}},
		{"a tuple a line", "INSERT INTO `a` VALUES\n(1,'it\\'s (1),\\n('),\n(2,'a;b');\nINSERT INTO `a` VALUES\n(3,'');\n",
			map[string]string{"check.rows.`a`": "3"}},
		{"columns, ignore, replace", "INSERT IGNORE INTO `b``c` (`id`, `v`) VALUES (1,\"(\"),(2,0x28);\nREPLACE INTO `d` VALUES (1);\n",
			map[string]string{"check.rows.`b``c`": "2", "check.rows.`d`": "1"}},
		{"an empty table and a comment", "-- INSERT INTO `x` VALUES (1);\nCREATE TABLE `e` (`id` int);\n",
			map[string]string{"check.rows.`e`": "0"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rc := newRowCounter()
			for i := range len(tc.dump) { // byte by byte: any split of the stream
				rc.Write([]byte{tc.dump[i]})
			}
			if got := rc.meta(); !maps.Equal(got, tc.want) {
				t.Errorf("got %v, want %v", got, tc.want)
			}
		})
	}
}
