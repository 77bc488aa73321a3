//go:build e2e

// Package e2e runs Remora as an operator does, on a real one-node Kubernetes
// cluster (hack/node: a kubelet with containerd and runc, the control plane
// built from pinned modules): the chart installed with helm, databases in
// StatefulSets, backups and restores through kubectl exec.
package e2e

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// node is the one-node cluster of hack/node: a real kubelet, containerd and
// runc, the control plane built from pinned modules.
type node struct {
	t    *testing.T
	root string   // the repository
	env  []string // KUBECONFIG and the node's settings
	bin  string   // kubectl, kubelet, ...
	work string
	// polling: commands run while waiting for a condition are not logged.
	polling bool
}

// The node's network, as hack/node/env.sh sets it by default.
const (
	nodeIP  = "10.177.0.1"
	nodeEnv = "NODE_NET=10.177.0"
)

// startNode starts the cluster with the image tarballs in REMORA_E2E_IMAGES
// imported, and stops it (removing all it made) when the test ends.
func startNode(t *testing.T) *node {
	t.Helper()
	root, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	images := os.Getenv("REMORA_E2E_IMAGES")
	tars, _ := filepath.Glob(filepath.Join(images, "*.tar"))
	if images == "" || len(tars) == 0 {
		t.Fatal("REMORA_E2E_IMAGES names no folder of image tarballs: run `make e2e` (hack/e2e-images.sh)")
	}
	n := &node{t: t, root: root, work: filepath.Join(os.TempDir(), fmt.Sprintf("remora-e2e-node-%d", os.Getpid()))}
	base := append(os.Environ(), nodeEnv, "NODE_WORK="+n.work)
	cache := strings.TrimSpace(n.script(base, "hack/node-binaries.sh", "--dir"))
	n.bin = cache
	pauseTar := strings.TrimSpace(n.script(base, "bash", "-c", ". hack/node/env.sh && echo $NODE_CACHE/image/pause.tar"))
	n.env = append(base, "NODE_IMAGES="+pauseTar+" "+strings.Join(tars, " "), "KUBECONFIG="+filepath.Join(n.work, "pki/admin.kubeconfig"))
	n.script(n.env, "hack/node/runtime.sh")
	start := time.Now()
	t.Cleanup(n.stop)
	n.script(n.env, "hack/node/start.sh")
	t.Logf("node Ready and accepting pods in %s", time.Since(start).Round(100*time.Millisecond))
	return n
}

// script runs a script of the repository and returns its output.
func (n *node) script(env []string, name string, args ...string) string {
	n.t.Helper()
	cmd := exec.Command(name, args...)
	if strings.HasPrefix(name, "hack/") {
		cmd = exec.Command(filepath.Join(n.root, name), args...)
	}
	cmd.Dir, cmd.Env = n.root, env
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		n.t.Fatalf("%s %s: %v\n%s\n%s", name, strings.Join(args, " "), err, out.String(), errb.String())
	}
	return out.String()
}

// stop stops the node and removes what it made; after a failure it first
// shows the ends of the logs.
func (n *node) stop() {
	if n.t.Failed() {
		for _, l := range []string{"kubelet", "kube-apiserver", "containerd"} {
			b, _ := os.ReadFile(filepath.Join(n.work, l+".log"))
			lines := strings.Split(string(b), "\n")
			n.t.Logf("%s log (end):\n%s", l, strings.Join(lines[max(0, len(lines)-25):], "\n"))
		}
	}
	cmd := exec.Command(filepath.Join(n.root, "hack/node/stop.sh"), "--purge")
	cmd.Dir, cmd.Env = n.root, n.env
	if out, err := cmd.CombinedOutput(); err != nil {
		n.t.Errorf("stopping the node: %v\n%s", err, out)
	}
}

// kubectl runs kubectl as the operator would, logging the command line.
func (n *node) kubectl(args ...string) (string, error) {
	n.t.Helper()
	return n.run(filepath.Join(n.bin, "kubectl"), args...)
}

// must runs kubectl and fails the test if it fails.
func (n *node) must(args ...string) string {
	n.t.Helper()
	out, err := n.kubectl(args...)
	if err != nil {
		n.t.Fatalf("kubectl %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return out
}

// helm runs the pinned helm against the node.
func (n *node) helm(args ...string) string {
	n.t.Helper()
	helm := os.Getenv("REMORA_HELM")
	if helm == "" {
		helm = filepath.Join(n.root, "bin/helm")
	}
	out, err := n.run(helm, args...)
	if err != nil {
		n.t.Fatalf("helm %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return out
}

func (n *node) run(bin string, args ...string) (string, error) {
	n.t.Helper()
	if !n.polling {
		n.t.Logf("$ %s %s", filepath.Base(bin), strings.Join(args, " "))
	}
	cmd := exec.Command(bin, args...)
	cmd.Dir, cmd.Env = n.root, n.env
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	if err != nil {
		return out.String() + errb.String(), err
	}
	return out.String(), nil
}

// apply creates the objects of a manifest.
func (n *node) apply(manifest string) {
	n.t.Helper()
	f := filepath.Join(n.t.TempDir(), "manifest.yaml")
	if err := os.WriteFile(f, []byte(manifest), 0o600); err != nil {
		n.t.Fatal(err)
	}
	n.must("apply", "-f", f)
}

// waitFor polls cond until it holds, failing the test after limit.
func (n *node) waitFor(what string, limit time.Duration, cond func() bool) time.Duration {
	n.t.Helper()
	start := time.Now()
	n.polling = true
	defer func() { n.polling = false }()
	for !cond() {
		if time.Since(start) > limit {
			n.t.Fatalf("%s: not within %s", what, limit)
		}
		time.Sleep(200 * time.Millisecond)
	}
	return time.Since(start)
}
