package storage_test

import (
	"context"
	"net/url"
	"strconv"
	"strings"
	"testing"

	"remora.dev/remora/storage"
	_ "remora.dev/remora/storage/file"
	_ "remora.dev/remora/storage/s3"
)

// FuzzOpen: any storage URL opens or fails with one line, without a panic and
// without echoing a password written into it.
func FuzzOpen(f *testing.F) {
	for _, s := range []string{
		"file:///backups", "s3://bucket/prefix?endpoint=minio:9000&region=eu&insecure=true",
		"s3://key:Canary-s3cr3t@bucket/", "s3://bucket?part-size=5GiB&path-style=true", "file://relative",
		"s3://", "ftp://x", "s3://b/p?ca-file=/nonexistent", "file:///tmp/x#days=7",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		ctx, cancel := context.WithCancel(context.Background())
		cancel() // nothing may be contacted
		st, err := storage.Open(ctx, raw, storage.Options{})
		if err != nil {
			if u, perr := url.Parse(raw); perr == nil && u.User != nil {
				// The credential part, as written or as %q quotes it, must
				// not come back (the same digits elsewhere, as in
				// "//:0000@0000", may).
				if pw, ok := u.User.Password(); ok && pw != "" {
					q := strconv.Quote(pw)
					for _, leak := range []string{":" + pw + "@", ":" + q[1:len(q)-1] + "@"} {
						if strings.Contains(err.Error(), leak) {
							t.Fatalf("error repeats the URL's password: %v", err)
						}
					}
				}
			}
			if strings.Contains(err.Error(), "\n") {
				t.Fatalf("error is not one line: %q", err)
			}
			return
		}
		_ = st
	})
}
