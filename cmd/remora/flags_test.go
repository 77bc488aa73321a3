package main

import (
	"net/url"
	"testing"
)

// The webhook passes the database container's password as REMORA_DB_PASSWORD;
// any character in it must reach the driver unchanged.
func TestWithCredentials(t *testing.T) {
	t.Parallel()
	const hard = `p@ss:w/o%rd#?&"' x`
	for _, tc := range []struct {
		dsn, user, pw    string
		wantUser, wantPw string // "" wantUser: the DSN stays as it is
	}{
		{"postgres://127.0.0.1:5432/postgres", "shop", hard, "shop", hard},
		{"postgres://postgres@127.0.0.1:5432/postgres", "", hard, "postgres", hard},
		{"redis://127.0.0.1:6379", "", hard, "", hard},
		{"mysql://root:own@127.0.0.1:3306/", "", hard, "", ""},
		{"host=/tmp user=postgres", "", hard, "", ""},
		{"postgres://127.0.0.1/postgres", "", "", "", ""},
	} {
		got := withCredentials(tc.dsn, tc.user, tc.pw)
		if tc.wantPw == "" {
			if got != tc.dsn {
				t.Errorf("%s changed to %s", tc.dsn, got)
			}
			continue
		}
		u, err := url.Parse(got)
		if err != nil {
			t.Fatalf("%s → %s: %v", tc.dsn, got, err)
		}
		if pw, _ := u.User.Password(); pw != tc.wantPw || u.User.Username() != tc.wantUser {
			t.Errorf("%s → user %q password %q, want %q %q", tc.dsn, u.User.Username(), pw, tc.wantUser, tc.wantPw)
		}
	}
}
