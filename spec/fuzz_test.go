package spec

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// FuzzParse feeds annotation sets (one key=value per line) to Parse: it must
// never panic, and every error must name the annotation it is about.
func FuzzParse(f *testing.F) {
	for _, s := range []string{
		"remora.dev/schedule=H H * * *\nremora.dev/retention=days=7,weeks=4,months=6",
		"remora.dev/schedule=@every 6h\nremora.dev/driver=files\nremora.dev/paths=/srv/a,/srv/b",
		"remora.dev/databases=shop,billing\nremora.dev/member=ordinal-0\nremora.dev/compression=gzip",
		"remora.dev/storage=a,b\nremora.dev/credentials=db\nremora.dev/container=pg",
		"remora.dev/schedule=every night\nremora.dev/retention=years=2",
		"remora.dev/member=ordinal-99999999\nremora.dev/paths=relative",
		"remora.dev/timeout=90m\nremora.dev/schedule=@hourly",
		"remora.dev/timeout=7d",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		ann := map[string]string{}
		for _, line := range strings.Split(in, "\n") {
			k, v, _ := strings.Cut(line, "=")
			ann[k] = v
		}
		_, err := Parse(ann, "shop/db-0")
		if err == nil {
			return
		}
		for _, line := range strings.Split(err.Error(), "\n") {
			if !strings.Contains(line, Prefix) {
				t.Errorf("error line names no annotation: %q", line)
			}
		}
	})
}

// FuzzReadFile reads arbitrary downward-API files: no panic, and a file
// written the kubelet's way reads back the same.
func FuzzReadFile(f *testing.F) {
	f.Add("remora.dev/schedule=\"H H * * *\"\nteam=\"a\\\"b\"\n")
	f.Add("x=\"\\u00e9\\n\"\n\n")
	f.Add("broken line\n")
	f.Fuzz(func(t *testing.T, in string) {
		p := filepath.Join(t.TempDir(), "annotations")
		if err := os.WriteFile(p, []byte(in), 0o600); err != nil {
			t.Fatal(err)
		}
		_, _ = ReadFile(p)
	})
}
