package repo

import (
	"context"
	"fmt"
	"strings"

	"remora.dev/remora/repo/retention"
	"remora.dev/remora/storage"
)

// Destination is one place a backup goes, with its own retention.
type Destination struct {
	Storage   storage.Storage
	Retention *retention.Policy // applied after a successful backup; nil keeps everything
}

// SplitDestination cuts a destination, "URL" or "URL#retention", into the
// storage URL and the retention written after the '#', if any.
func SplitDestination(s string) (rawURL, policy string, own bool) {
	return strings.Cut(s, "#")
}

// OpenDestinations opens every destination of a backup. Each keeps its own
// retention after a '#' (file:///backups#days=6; "#none" keeps everything),
// else def (nil keeps everything).
func OpenDestinations(ctx context.Context, dests []string, def *retention.Policy, opts storage.Options) ([]Destination, error) {
	if len(dests) == 0 {
		_, err := storage.Open(ctx, "", opts)
		return nil, err
	}
	var out []Destination
	for _, s := range dests {
		raw, policy, own := SplitDestination(s)
		st, err := storage.Open(ctx, raw, opts)
		if err != nil {
			return nil, err
		}
		d := Destination{Storage: st, Retention: def}
		if own {
			if d.Retention, err = retention.ParseOrNone(policy); err != nil {
				return nil, fmt.Errorf("storage %s: %w", st, err)
			}
		}
		out = append(out, d)
	}
	return out, nil
}
