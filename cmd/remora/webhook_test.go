package main

import (
	"errors"
	"os"
	"path/filepath"
	"testing"

	"remora.dev/remora/webhook"
)

// The webhook holds the Go runtime to 90% of its container's memory limit:
// --memory-limit (the chart sets it from the downward API), else the
// cgroup's, v2 or v1; no limit anywhere sets none.
func TestWebhookMemoryLimit(t *testing.T) {
	for _, tc := range []struct {
		name, flag string
		files      map[string]string // below the root
		want       int64
		bad        bool
	}{
		{"flag in bytes", "134217728", nil, 120795948, false},
		{"flag as a quantity", "128Mi", map[string]string{"sys/fs/cgroup/memory.max": "1073741824\n"}, 120795948, false},
		{"flag not a quantity", "lots", nil, 0, true},
		{"cgroup v2", "", map[string]string{"sys/fs/cgroup/memory.max": "268435456\n"}, 241591905, false},
		{"cgroup v2 unlimited", "", map[string]string{"sys/fs/cgroup/memory.max": "max\n"}, 0, false},
		{"cgroup v1", "", map[string]string{"sys/fs/cgroup/memory/memory.limit_in_bytes": "536870912\n"}, 483183819, false},
		{"cgroup v1 unlimited", "", map[string]string{"sys/fs/cgroup/memory/memory.limit_in_bytes": "9223372036854771712\n"}, 0, false},
		{"no cgroup", "", nil, 0, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			root := t.TempDir()
			for name, content := range tc.files {
				p := filepath.Join(root, name)
				os.MkdirAll(filepath.Dir(p), 0o755)
				if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			w := &webhookCommand{memoryLimit: tc.flag}
			got, _, err := w.goMemoryLimit(root)
			if (err != nil) != tc.bad || got != tc.want {
				t.Errorf("limit %d, error %v; want %d, error %v", got, err, tc.want, tc.bad)
			}
		})
	}
}

// --max-in-flight and --queue-wait are checked.
func TestWebhookAdmissionLimits(t *testing.T) {
	for _, tc := range []struct {
		inFlight, wait string
		want           webhook.Limits
		bad            bool
	}{
		{"8", "2s", webhook.Limits{MaxInFlight: 8, QueueWait: 2e9}, false},
		{"1", "0", webhook.Limits{MaxInFlight: 1}, false},
		{"0", "2s", webhook.Limits{}, true},
		{"many", "2s", webhook.Limits{}, true},
		{"8", "-1s", webhook.Limits{}, true},
		{"8", "soon", webhook.Limits{}, true},
	} {
		w := &webhookCommand{maxInFlight: tc.inFlight, queueWait: tc.wait}
		got, err := w.admissionLimits()
		if (err != nil) != tc.bad || !tc.bad && got != tc.want {
			t.Errorf("--max-in-flight=%s --queue-wait=%s: %+v, %v", tc.inFlight, tc.wait, got, err)
		}
	}
}

// TestBackupVolumeFlag: --backup-volume takes one Kubernetes volume source
// as JSON and refuses anything else with a usage error.
func TestBackupVolumeFlag(t *testing.T) {
	for _, tc := range []struct {
		in, kind string // kind: the source's field that must be set; "" for an error
	}{
		{"", "none"},
		{`{"nfs":{"server":"nfs.example","path":"/exports/backups"}}`, "nfs"},
		{`{"persistentVolumeClaim":{"claimName":"backups"}}`, "pvc"},
		{`{"nfs":{"server":"a","path":"/x"},"hostPath":{"path":"/y"}}`, ""},
		{`{"nfss":{}}`, ""},
		{`{}`, ""},
		{`nfs`, ""},
	} {
		v, err := backupVolume(tc.in)
		switch tc.kind {
		case "":
			var ue usageError
			if !errors.As(err, &ue) {
				t.Errorf("%q: %v, want a usage error", tc.in, err)
			}
		case "none":
			if v != nil || err != nil {
				t.Errorf("%q: %v %v", tc.in, v, err)
			}
		case "nfs":
			if err != nil || v.NFS == nil || v.NFS.Server != "nfs.example" {
				t.Errorf("%q: %+v %v", tc.in, v, err)
			}
		case "pvc":
			if err != nil || v.PersistentVolumeClaim == nil || v.PersistentVolumeClaim.ClaimName != "backups" {
				t.Errorf("%q: %+v %v", tc.in, v, err)
			}
		}
	}
}

// --restore-across-namespaces is off unless set true, and checked.
func TestRestoreAcrossNamespacesFlag(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want bool
		bad  bool
	}{{"false", false, false}, {"true", true, false}, {"yes please", false, true}} {
		w := &webhookCommand{sidecarMode: webhook.SidecarAuto, autoDetect: "true", restoreAcross: tc.in}
		cfg, err := w.config()
		var ue usageError
		if tc.bad != errors.As(err, &ue) || !tc.bad && (err != nil || cfg.RestoreAcrossNamespaces != tc.want) {
			t.Errorf("--restore-across-namespaces=%q: %v, %v", tc.in, cfg.RestoreAcrossNamespaces, err)
		}
	}
}
