//go:build race

package testenv

// Race is whether this test binary was built with the race detector; the
// remora binary BuildRemora makes then has it too.
const Race = true
