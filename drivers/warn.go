package drivers

import (
	"context"
	"fmt"
)

type warnKey struct{}

// WithWarn returns a context through which a driver reports, during a dump,
// what the operator should know but that does not fail the backup (a file
// that changed while it was read). The backup records them in its manifest.
func WithWarn(ctx context.Context, fn func(msg string)) context.Context {
	return context.WithValue(ctx, warnKey{}, fn)
}

// Warnf reports a warning through the context's function, if any.
func Warnf(ctx context.Context, format string, a ...any) {
	if fn, ok := ctx.Value(warnKey{}).(func(string)); ok && fn != nil {
		fn(fmt.Sprintf(format, a...))
	}
}
