package main

import (
	"flag"
	"io"
	"slices"
	"testing"

	"remora.dev/remora/drivers"
	"remora.dev/remora/repo"
	"remora.dev/remora/sidecar"
	"remora.dev/remora/spec"
)

// TestAnnotationValues: what the annotations accept is what this binary
// can do.
func TestAnnotationValues(t *testing.T) {
	if got := drivers.Names(); !slices.Equal(got, spec.Drivers) {
		t.Errorf("registered drivers %v, remora.dev/driver accepts %v", got, spec.Drivers)
	}
	want := slices.Clone(spec.Compressions)
	slices.Sort(want)
	if got := repo.Compressions(); !slices.Equal(got, want) {
		t.Errorf("known compressions %v, remora.dev/compression accepts %v", got, want)
	}
}

// TestSidecarEnvironment: every variable the webhook sets for the agent is
// the environment twin of one of `remora agent`'s flags.
func TestSidecarEnvironment(t *testing.T) {
	a := &agentCommand{env: &environment{stdout: io.Discard, stderr: io.Discard}}
	fs := a.env.newFlagSet("agent", "agent")
	a.flags(fs)
	twins := map[string]bool{}
	fs.VisitAll(func(f *flag.Flag) { twins[envName(f.Name)] = true })
	for _, name := range []string{sidecar.EnvNamespace, sidecar.EnvWorkload, sidecar.EnvDriver, sidecar.EnvDSN,
		sidecar.EnvPaths, sidecar.EnvAnnotations, sidecar.EnvSocket, sidecar.EnvStorage} {
		if !twins[name] {
			t.Errorf("the webhook sets %s, which no flag of remora agent reads", name)
		}
	}
}
