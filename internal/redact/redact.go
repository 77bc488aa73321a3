// Package redact keeps secrets out of everything Remora prints. Secrets are
// registered once when they are read (passwords in DSNs, storage keys), and
// every byte Remora writes to stdout, stderr or its logs passes through a
// Writer that replaces them.
package redact

import (
	"encoding/json"
	"io"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
)

// Mask replaces a secret in output.
const Mask = "xxxxx"

var (
	mu      sync.RWMutex
	secrets []string
)

// Add registers secrets. Values shorter than 4 bytes are ignored: masking
// them would mangle ordinary words and hide nothing.
func Add(values ...string) {
	mu.Lock()
	defer mu.Unlock()
	for _, v := range values {
		if len(v) < 4 {
			continue
		}
		dup := false
		for _, s := range secrets {
			dup = dup || s == v
		}
		if dup {
			continue
		}
		// A secret can also show escaped: in a URL, in a JSON log record
		// (a quote or a backslash), or quoted by %q.
		q := strconv.Quote(v)
		for _, e := range append([]string{v, url.QueryEscape(v), url.PathEscape(v), q[1 : len(q)-1]}, jsonForms(v)...) {
			if !slices.Contains(secrets, e) {
				secrets = append(secrets, e)
			}
		}
	}
}

// jsonForms are v as a JSON string holds it (without the quotes), with and
// without HTML escaping.
func jsonForms(v string) []string {
	var out []string
	for _, html := range []bool{true, false} {
		var b strings.Builder
		enc := json.NewEncoder(&b)
		enc.SetEscapeHTML(html)
		enc.Encode(v)
		js := strings.TrimSpace(b.String())
		out = append(out, js[1:len(js)-1])
	}
	return out
}

// AddURLPassword registers the password of a URL such as a DSN.
func AddURLPassword(raw string) {
	if u, err := url.Parse(raw); err == nil && u.User != nil {
		if pw, ok := u.User.Password(); ok {
			Add(pw)
		}
	}
}

// String returns s with every registered secret masked.
func String(s string) string {
	mu.RLock()
	defer mu.RUnlock()
	for _, sec := range secrets {
		if strings.Contains(s, sec) {
			s = strings.ReplaceAll(s, sec, Mask)
		}
	}
	return s
}

// Writer masks secrets in everything written to w. Each Write is masked on
// its own, which suits log records and lines.
func Writer(w io.Writer) io.Writer { return writer{w} }

type writer struct{ w io.Writer }

func (r writer) Write(p []byte) (int, error) {
	s := String(string(p))
	if _, err := io.WriteString(r.w, s); err != nil {
		return 0, err
	}
	return len(p), nil
}
