package bench

import (
	"errors"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"k8s.io/apimachinery/pkg/api/resource"

	"remora.dev/remora/sidecar"
)

// podCgroups lays the benchmark's processes out as the kubelet lays out a
// pod's containers, in cgroups under <mount>/remora-bench-<pid>:
//
//	pod          the pod's cgroup: the sum of its containers' requests
//	pod/db       the database container (the server and all it forks; the
//	             load generator too, standing in for the clients' requests)
//	pod/sidecar  the remora container (`remora backup` and its children)
//	storage      the S3 server, standing in for storage on another machine
//
// Only the CPU controller is used: the kubelet sets no I/O weight either.
type podCgroups struct {
	v2   bool
	dir  string // <mount>/remora-bench-<pid>
	home string // cgroup.procs of the cgroup the processes came from
}

// The CPU requests behind the layout: a database container requesting one
// core (1024 shares, the kernel's default weight: the database counts as
// much as any other unconfined process), the sidecar's request as the
// webhook and the chart set it, and for the storage the minimum, 2 shares,
// so that it runs mostly on CPU nobody else wants.
const dbMilliCPU = 1000

func sidecarMilliCPU() int64 {
	q := resource.MustParse(sidecar.CPURequest)
	return q.MilliValue()
}

// podGroups are the cgroups in the order they are made, and their shares.
func podGroups() []struct {
	path   string
	shares int64
} {
	return []struct {
		path   string
		shares int64
	}{
		{"pod", milliCPUToShares(dbMilliCPU + sidecarMilliCPU())},
		{"pod/db", milliCPUToShares(dbMilliCPU)},
		{"pod/sidecar", milliCPUToShares(sidecarMilliCPU())},
		{"storage", 2},
	}
}

// milliCPUToShares is the kubelet's conversion of a CPU request into
// cgroup v1 cpu.shares.
func milliCPUToShares(milli int64) int64 { return max(milli*1024/1000, 2) }

// sharesToWeightLinear is the cgroup v2 cpu.weight runc before 1.3.2 (and
// the kubelet's own cgroup code until then) sets for cpu.shares: 1024
// shares are a weight of 39, not the default 100.
func sharesToWeightLinear(shares int64) int64 { return 1 + (shares-2)*9999/262142 }

// sharesToWeight is the conversion of runc 1.3.2 and later and crun 1.23 and
// later (opencontainers/runc#4785): a quadratic in log2(shares) that maps 2,
// 1024 and 262144 shares to the weights 1, 100 and 10000.
func sharesToWeight(shares int64) int64 {
	if shares <= 2 {
		return 1
	}
	if shares >= 262144 {
		return 10000
	}
	l := math.Log2(float64(shares))
	return int64(math.Ceil(math.Pow(10, (l*l+125*l)/612-7.0/34)))
}

// newPodCgroups makes the layout, or says why it cannot: it needs root and
// a writable cgroup v2 hierarchy with the cpu controller, or a cgroup v1
// cpu hierarchy.
func newPodCgroups() (*podCgroups, error) {
	c := &podCgroups{}
	mount := "/sys/fs/cgroup"
	if _, err := os.Stat(mount + "/cgroup.controllers"); err == nil {
		c.v2 = true
		if err := enableCPU(mount); err != nil {
			return nil, err
		}
	} else if mount += "/cpu"; !exists(mount + "/cpu.shares") {
		return nil, errors.New("no cgroup v2 hierarchy at /sys/fs/cgroup and no cgroup v1 cpu hierarchy at /sys/fs/cgroup/cpu")
	}
	own, err := ownCgroup(c.v2)
	if err != nil {
		return nil, err
	}
	c.home = filepath.Join(mount, own, "cgroup.procs")
	c.dir = filepath.Join(mount, fmt.Sprintf("remora-bench-%d", os.Getpid()))
	if err := os.Mkdir(c.dir, 0o755); err != nil {
		return nil, err
	}
	for _, g := range podGroups() {
		if err := c.makeGroup(g.path, g.shares); err != nil {
			c.remove()
			return nil, err
		}
	}
	return c, nil
}

// makeGroup makes one cgroup with the weight the kubelet would give it; in
// cgroup v2 its parent must first hand the cpu controller down.
func (c *podCgroups) makeGroup(path string, shares int64) error {
	dir := filepath.Join(c.dir, path)
	if c.v2 {
		if err := enableCPU(filepath.Dir(dir)); err != nil {
			return err
		}
	}
	if err := os.Mkdir(dir, 0o755); err != nil {
		return err
	}
	if c.v2 {
		return writeCgroupFile(filepath.Join(dir, "cpu.weight"), strconv.FormatInt(sharesToWeight(shares), 10))
	}
	return writeCgroupFile(filepath.Join(dir, "cpu.shares"), strconv.FormatInt(shares, 10))
}

// enableCPU hands the cpu controller down to dir's children (cgroup v2).
func enableCPU(dir string) error {
	b, err := os.ReadFile(filepath.Join(dir, "cgroup.subtree_control"))
	if err == nil && slices.Contains(strings.Fields(string(b)), "cpu") {
		return nil
	}
	return writeCgroupFile(filepath.Join(dir, "cgroup.subtree_control"), "+cpu")
}

// ownCgroup is this process's cgroup path in the cpu hierarchy.
func ownCgroup(v2 bool) (string, error) {
	b, err := os.ReadFile("/proc/self/cgroup")
	if err != nil {
		return "", err
	}
	for line := range strings.Lines(string(b)) {
		// hierarchy-ID:controller-list:path
		f := strings.SplitN(strings.TrimSpace(line), ":", 3)
		if len(f) == 3 && (v2 && f[0] == "0" || !v2 && slices.Contains(strings.Split(f[1], ","), "cpu")) {
			return f[2], nil
		}
	}
	return "", errors.New("no cpu cgroup in /proc/self/cgroup")
}

// procs is the cgroup.procs file of group, or home's for "": writing a pid
// there moves the whole process; its children forked later follow it.
func (c *podCgroups) procs(group string) string {
	if group == "" {
		return c.home
	}
	return filepath.Join(c.dir, group, "cgroup.procs")
}

// move moves pid and all its descendants into group ("": back home). The
// parent goes first, so that what it forks meanwhile is born there.
func (c *podCgroups) move(pid int, group string) error {
	for _, p := range tree(pid) {
		if err := writeCgroupFile(c.procs(group), strconv.Itoa(p)); err != nil && !errors.Is(err, syscall.ESRCH) {
			return fmt.Errorf("move %d into %s: %w", p, c.procs(group), err)
		}
	}
	return nil
}

// remove moves every process left in the layout back home and removes the
// cgroups, the innermost first.
func (c *podCgroups) remove() {
	groups := podGroups()
	for i := len(groups) - 1; i >= 0; i-- {
		dir := filepath.Join(c.dir, groups[i].path)
		b, _ := os.ReadFile(filepath.Join(dir, "cgroup.procs"))
		for _, pid := range strings.Fields(string(b)) {
			_ = writeCgroupFile(c.home, pid)
		}
		_ = os.Remove(dir)
	}
	if err := os.Remove(c.dir); err != nil && !errors.Is(err, os.ErrNotExist) {
		fmt.Printf("cgroup %s not removed: %v\n", c.dir, err)
	}
}

// inCgroup makes cmd join the cgroup whose cgroup.procs is procs before it
// runs (a shell writes its own pid there, then execs the program), so that
// nothing of it runs outside; "" leaves cmd as it is.
func inCgroup(cmd *exec.Cmd, procs string) *exec.Cmd {
	if procs == "" {
		return cmd
	}
	cmd.Args = append([]string{"sh", "-c", `echo $$ > "$0" && exec "$@"`, procs, cmd.Path}, cmd.Args[1:]...)
	cmd.Path = "/bin/sh"
	return cmd
}

// describe says how the layout weighs its groups.
func (c *podCgroups) describe() string {
	var parts []string
	for _, g := range podGroups() {
		if c.v2 {
			parts = append(parts, fmt.Sprintf("%s cpu.weight %d (%d shares; %d under runc < 1.3.2)", g.path,
				sharesToWeight(g.shares), g.shares, sharesToWeightLinear(g.shares)))
		} else {
			parts = append(parts, fmt.Sprintf("%s cpu.shares %d", g.path, g.shares))
		}
	}
	v := "v1"
	if c.v2 {
		v = "v2"
	}
	return fmt.Sprintf("cgroup %s under %s: %s", v, c.dir, strings.Join(parts, ", "))
}

// ioWeights says whether this machine could weigh I/O between cgroups, and
// that the layout does not: the kubelet sets no I/O weight.
func ioWeights(v2 bool) string {
	files := []string{"/sys/fs/cgroup/blkio/blkio.weight", "/sys/fs/cgroup/blkio/blkio.bfq.weight"}
	if v2 {
		files = []string{"/sys/fs/cgroup/io.weight", "/sys/fs/cgroup/io.bfq.weight"}
	}
	var have []string
	for _, f := range files {
		if exists(f) {
			have = append(have, filepath.Base(f))
		}
	}
	if len(have) == 0 {
		return "no I/O weights: the kubelet sets none, and this machine has none of " + strings.Join(files, ", ")
	}
	return "no I/O weights: the kubelet sets none (this machine has " + strings.Join(have, ", ") + ")"
}

func exists(path string) bool { _, err := os.Stat(path); return err == nil }

func writeCgroupFile(path, s string) error { return os.WriteFile(path, []byte(s), 0o644) }

// TestPodCgroupWeights pins the kubelet's and runc's conversions the pod
// layout uses, at the requests it uses them for.
func TestPodCgroupWeights(t *testing.T) {
	for _, c := range []struct {
		milli, shares, weight, linear int64
	}{
		{milli: 0, shares: 2, weight: 1, linear: 1},          // no request: the minimum
		{milli: 10, shares: 10, weight: 4, linear: 1},        // the sidecar's
		{milli: 1000, shares: 1024, weight: 100, linear: 39}, // one core
		{milli: 1010, shares: 1034, weight: 101, linear: 40}, // the pod: both
	} {
		shares := milliCPUToShares(c.milli)
		if shares != c.shares || sharesToWeight(shares) != c.weight || sharesToWeightLinear(shares) != c.linear {
			t.Errorf("%dm: %d shares, weight %d (linear %d); want %d, %d (%d)", c.milli, shares,
				sharesToWeight(shares), sharesToWeightLinear(shares), c.shares, c.weight, c.linear)
		}
	}
	if got := sidecarMilliCPU(); got != 10 {
		t.Errorf("sidecar request %dm, want the 10m the table above assumes", got)
	}
}
