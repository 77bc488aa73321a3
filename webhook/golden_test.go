package webhook

import (
	"bytes"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/yaml"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata")

// goldenConfig is the webhook configured as the chart does by default.
func goldenConfig() Config {
	return Config{
		Image: "remora:test", SidecarMode: "auto", NativeSupported: true, AutoDetect: true, OwnNamespace: "remora-system",
		DefaultStorage: "s3://backups/?endpoint=minio.storage:9000",
		Resources:      defaultResources(),
	}
}

// TestGolden runs Mutate on every testdata/<case>/pod.yaml and compares the
// outcome with the case's patch.json (the JSON patch), denied.txt (the
// message) or skipped.txt (why the pod is unchanged). go test -run TestGolden
// -update rewrites them; review the diff.
func TestGolden(t *testing.T) {
	dirs, _ := filepath.Glob("testdata/*/pod.yaml")
	if len(dirs) < 10 {
		t.Fatalf("only %d golden cases", len(dirs))
	}
	for _, in := range dirs {
		dir := filepath.Dir(in)
		t.Run(filepath.Base(dir), func(t *testing.T) {
			f, err := os.Open(in)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			var pod corev1.Pod
			if err := yaml.NewYAMLOrJSONDecoder(f, 4096).Decode(&pod); err != nil {
				t.Fatalf("%s: %v", in, err)
			}
			// A case may configure the webhook otherwise: config.json
			// holds the fields of Config that differ.
			cfg := goldenConfig()
			if b, err := os.ReadFile(filepath.Join(dir, "config.json")); err == nil {
				if err := json.Unmarshal(b, &cfg); err != nil {
					t.Fatalf("config.json: %v", err)
				}
			}
			res := Mutate(&pod, pod.Namespace, cfg)
			var name string
			var got []byte
			switch {
			case res.Denied != "":
				name, got = "denied.txt", []byte(res.Denied+"\n")
			case res.Patch == nil:
				name, got = "skipped.txt", []byte(res.Skip+"\n")
			default:
				name = "patch.json"
				if got, err = json.MarshalIndent(res.Patch, "", "  "); err != nil {
					t.Fatal(err)
				}
				got = append(got, '\n')
			}
			want := filepath.Join(dir, name)
			if *update {
				for _, old := range []string{"denied.txt", "skipped.txt", "patch.json"} {
					os.Remove(filepath.Join(dir, old))
				}
				if err := os.WriteFile(want, got, 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			b, err := os.ReadFile(want)
			if err != nil {
				t.Fatalf("outcome %s differs from the golden case (%v); got:\n%s", name, err, got)
			}
			if !bytes.Equal(b, got) {
				t.Errorf("%s differs (go test ./webhook -run TestGolden -update, then review the diff); got:\n%s", want, got)
			}
			if res.Denied != "" {
				for _, ann := range strings.Fields("remora.dev/schedule remora.dev/retention") {
					if pod.Annotations[ann] != "" && (!strings.Contains(res.Denied, ann) || !strings.Contains(res.Denied, pod.Annotations[ann]) || !strings.Contains(res.Denied, "example")) {
						t.Errorf("denial must name %s, its value and an example: %s", ann, res.Denied)
					}
				}
			}
		})
	}
}
