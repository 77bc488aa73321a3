package storage_test

import (
	"net/url"
	"testing"
	"time"

	"remora.dev/remora/storage"
)

type conf struct {
	xfer storage.Transfer
	name string
}

var confOptions = append([]storage.Option[*conf]{
	{Name: "name", Set: func(c *conf, v string) error { c.name = v; return nil }},
}, storage.TransferOptions(func(c *conf) *storage.Transfer { return &c.xfer }, "timeout")...)

// TestApplyOptions: every backend's stall= and retries= read the same way,
// with the same error for a bad value, and an unknown option names the known.
func TestApplyOptions(t *testing.T) {
	for _, tc := range []struct {
		query   string
		want    storage.Transfer
		wantErr string
	}{
		{"", storage.Transfer{Stall: 60 * time.Second, Retries: 5}, ""},
		{"stall=1s&retries=0&name=x", storage.Transfer{Stall: time.Second, Retries: 0}, ""},
		{"timeout=100ms", storage.Transfer{Stall: 100 * time.Millisecond, Retries: 5}, ""},
		{"stall=2s&stall=3s", storage.Transfer{Stall: 3 * time.Second, Retries: 5}, ""},
		{"stall=1ns", storage.Transfer{}, `stall="1ns": want a duration from 100ms to 1h, e.g. 60s`},
		{"timeout=x", storage.Transfer{}, `timeout="x": want a duration from 100ms to 1h, e.g. 60s`},
		{"retries=21", storage.Transfer{}, `retries="21": want 0 to 20`},
		{"nope=1", storage.Transfer{}, `unknown option "nope"; known: name, stall, retries, timeout`},
	} {
		q, _ := url.ParseQuery(tc.query)
		c := &conf{xfer: storage.DefaultTransfer()}
		err := storage.ApplyOptions(c, q, confOptions)
		switch {
		case tc.wantErr != "" && (err == nil || err.Error() != tc.wantErr):
			t.Errorf("%s: %v, want %q", tc.query, err, tc.wantErr)
		case tc.wantErr == "" && (err != nil || c.xfer != tc.want):
			t.Errorf("%s: %+v, %v; want %+v", tc.query, c.xfer, err, tc.want)
		}
	}
}
