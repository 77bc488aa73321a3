package ftp_test

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"

	"remora.dev/remora/internal/testenv"
	"remora.dev/remora/storage"
	_ "remora.dev/remora/storage/ftp"
	"remora.dev/remora/storage/storagetest"
)

// TestConformance runs the storage suite against vsftpd, over plain FTP and
// over explicit TLS.
func TestConformance(t *testing.T) {
	srv := testenv.StartFTP(t)
	srv.SetEnv(t)
	var n atomic.Int32
	for _, tc := range []struct {
		name string
		url  func(dir string) string
	}{{"ftp", srv.PlainURL}, {"ftps", srv.URL}} {
		t.Run(tc.name, func(t *testing.T) {
			storagetest.Run(t, func(t *testing.T) storage.Storage {
				dir := srv.MakeDir(t, fmt.Sprintf("backups%d", n.Add(1)))
				s, err := storage.Open(context.Background(), tc.url(dir), storage.Options{})
				if err != nil {
					t.Fatal(err)
				}
				return s
			})
		})
	}
}
