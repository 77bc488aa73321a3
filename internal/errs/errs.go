// Package errs holds the error helpers more than one package needs.
package errs

import "errors"

// Root is the innermost error of a chain of single wraps: for a failed dial
// or request, the part that says what went wrong.
func Root(err error) error {
	for {
		u := errors.Unwrap(err)
		if u == nil {
			return err
		}
		err = u
	}
}
