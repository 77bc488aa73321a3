package s3

import "time"

// SetBackoffUnit shortens the wait between attempts for a test.
func SetBackoffUnit(d time.Duration) (restore func()) {
	old := backoffUnit
	backoffUnit = d
	return func() { backoffUnit = old }
}

// CredentialSource tells where the storage's keys come from: "keys", "file"
// or "cloud".
func CredentialSource(s any) string { return s.(*Storage).creds }
