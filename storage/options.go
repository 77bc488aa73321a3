package storage

import (
	"fmt"
	"maps"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/dustin/go-humanize"
)

// Defaults and limits of the options every backend takes: stall= (how long
// a request may move no data before it is given up and, where it can be,
// tried again) and retries= (how many more attempts a transient fault gets).
const (
	DefaultStall   = 60 * time.Second
	DefaultRetries = 5
	minStall       = 100 * time.Millisecond
	maxStall       = time.Hour
	maxRetries     = 20
)

// Option is one option of a storage URL's query, and how it sets up a
// backend's configuration C.
type Option[C any] struct {
	Name string
	Set  func(c C, v string) error
}

// Transfer holds the options every backend takes.
type Transfer struct {
	Stall   time.Duration
	Retries int
}

// DefaultTransfer is stall=60s, retries=5.
func DefaultTransfer() Transfer { return Transfer{Stall: DefaultStall, Retries: DefaultRetries} }

// TransferOptions are stall= and retries= for a configuration whose Transfer
// get returns; aliases are other names stall= goes by in a backend (timeout=,
// its name before every backend had it).
func TransferOptions[C any](get func(C) *Transfer, aliases ...string) []Option[C] {
	stall := func(name string) Option[C] {
		return Option[C]{name, func(c C, v string) (err error) {
			get(c).Stall, err = ParseStall(name, v)
			return err
		}}
	}
	opts := []Option[C]{stall("stall"), {"retries", func(c C, v string) (err error) {
		get(c).Retries, err = ParseInt("retries", v, 0, maxRetries)
		return err
	}}}
	for _, a := range aliases {
		opts = append(opts, stall(a))
	}
	return opts
}

// ApplyOptions sets up c from the options in q, in the order of opts. A name
// that is not in opts is refused, with an error naming those that are; when
// an option is given twice, the last value counts. Errors are about the
// option alone: the backend wraps them in its error about the URL.
func ApplyOptions[C any](c C, q url.Values, opts []Option[C]) error {
	for _, k := range slices.Sorted(maps.Keys(q)) {
		if !slices.ContainsFunc(opts, func(o Option[C]) bool { return o.Name == k }) {
			names := make([]string, len(opts))
			for i, o := range opts {
				names[i] = o.Name
			}
			return fmt.Errorf("unknown option %q; known: %s", k, strings.Join(names, ", "))
		}
	}
	for _, o := range opts {
		if vs, ok := q[o.Name]; ok {
			if err := o.Set(c, vs[len(vs)-1]); err != nil {
				return err
			}
		}
	}
	return nil
}

// ParseStall reads a stall time: a duration from 100ms to 1h.
func ParseStall(name, v string) (time.Duration, error) {
	d, err := time.ParseDuration(v)
	if err != nil || d < minStall || d > maxStall {
		return 0, fmt.Errorf("%s=%q: want a duration from 100ms to 1h, e.g. 60s", name, v)
	}
	return d, nil
}

// ParseInt reads a whole number from lo to hi.
func ParseInt(name, v string, lo, hi int) (int, error) {
	n, err := strconv.Atoi(v)
	if err != nil || n < lo || n > hi {
		return 0, fmt.Errorf("%s=%q: want %d to %d", name, v, lo, hi)
	}
	return n, nil
}

// ParseBool reads true or false (or 1, 0, t, f as strconv.ParseBool does).
func ParseBool(name, v string) (bool, error) {
	b, err := strconv.ParseBool(v)
	if err != nil {
		return false, fmt.Errorf("%s=%q: want true or false", name, v)
	}
	return b, nil
}

// ParseSize reads a number of bytes with an optional unit, as
// humanize.ParseBytes reads it (8388608, 16MiB, 16MB decimal, 1GiB), from lo
// to hi and a multiple of unit (1 for any); want says what is wanted, for
// the error: "a size from 5MiB to 5GiB, e.g. 16MiB".
func ParseSize(name, v string, lo, hi, unit int64, want string) (int64, error) {
	n, err := humanize.ParseBytes(strings.TrimSpace(v))
	if err != nil || n < uint64(lo) || n > uint64(hi) || n%uint64(unit) != 0 {
		return 0, fmt.Errorf("%s=%q: want %s", name, v, want)
	}
	return int64(n), nil
}
