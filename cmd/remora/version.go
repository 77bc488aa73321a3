package main

import (
	"context"
	"fmt"
	"runtime"

	"remora.dev/remora/internal/version"
)

type versionCommand struct{ env *environment }

func (v *versionCommand) Run(ctx context.Context, args []string) error {
	fs := v.env.newFlagSet("version", "version")
	if err := parse(fs, args); err != nil {
		return err
	}
	fmt.Fprintf(v.env.stdout, "remora %s %s %s/%s\n", version.Version(), runtime.Version(), runtime.GOOS, runtime.GOARCH)
	return nil
}
