# Remora. `make demo` runs the demo on a throwaway one-node cluster; `make test` runs every test.
GO        ?= go
GOFLAGS   ?=
VERSION   ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS   := -X remora.dev/remora/internal/version.version=$(VERSION)

# The tests find the S3-compatible server and helm here.
export REMORA_VERSITYGW ?= $(CURDIR)/bin/versitygw
export REMORA_FAKE_GCS ?= $(CURDIR)/bin/fake-gcs-server
export REMORA_HELM ?= $(CURDIR)/bin/helm
export REMORA_PROMTOOL ?= $(CURDIR)/bin/promtool
export REMORA_AZURITE ?= $(CURDIR)/bin/azurite
# kube-apiserver and etcd for the webhook's tests, built once into a cache
# outside the clone (hack/kube-binaries.sh).
export REMORA_KUBE_BIN ?= $(shell hack/kube-binaries.sh --dir)

.PHONY: all build deps kube-bins node-bins test vet demo demo-cli bench clean image e2e fuzz soak

all: build

build:
	$(GO) build -ldflags "$(LDFLAGS)" -o bin/remora ./cmd/remora

# The S3-compatible test server (versitygw, Apache-2.0), pinned in tools/versitygw.
bin/versitygw: tools/versitygw/go.mod tools/versitygw/go.sum
	$(GO) -C tools/versitygw build -o $(CURDIR)/bin/versitygw github.com/versity/versitygw/cmd/versitygw

# The Azure Blob test server (Azurite, MIT), pinned in tools/azurite: npm ci
# into .cache/azurite, and bin/azurite runs its blob service.
bin/azurite: tools/azurite/package.json tools/azurite/package-lock.json
	mkdir -p .cache/azurite bin
	cp tools/azurite/package.json tools/azurite/package-lock.json .cache/azurite/
	npm ci --prefix .cache/azurite --no-audit --no-fund --loglevel=error
	printf '#!/bin/sh\nexec "$$(dirname "$$0")/../.cache/azurite/node_modules/.bin/azurite-blob" "$$@"\n' >$@
	chmod +x $@

# The GCS test server (fake-gcs-server, BSD-2-Clause), pinned in tools/fake-gcs-server.
bin/fake-gcs-server: tools/fake-gcs-server/go.mod tools/fake-gcs-server/go.sum
	$(GO) -C tools/fake-gcs-server build -o $(CURDIR)/bin/fake-gcs-server github.com/fsouza/fake-gcs-server

# helm, pinned in tools/helm, to lint and render the chart in the tests.
bin/helm: tools/helm/go.mod tools/helm/go.sum
	$(GO) -C tools/helm build -o $(CURDIR)/bin/helm helm.sh/helm/v3/cmd/helm

# promtool, pinned in tools/promtool, to test the chart's alerting rules.
bin/promtool: tools/promtool/go.mod tools/promtool/go.sum
	$(GO) -C tools/promtool build -o $(CURDIR)/bin/promtool github.com/prometheus/prometheus/cmd/promtool

deps:
	hack/install-deps.sh

kube-bins:
	@hack/kube-binaries.sh >/dev/null

vet:
	@out=$$(gofmt -l . | grep -v '^tools/' || true); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	$(GO) vet -tags e2e ./e2e

test: deps bin/versitygw bin/fake-gcs-server bin/helm bin/promtool bin/azurite kube-bins vet
	$(GO) test -race -count=1 -timeout 20m ./...

# The main demo: the operator's path on a throwaway one-node cluster
# (hack/demo-cluster.sh, root). The first run builds the node's binaries and
# the images (about 15 minutes on 2 cores); later runs take about 2 minutes.
demo: deps bin/versitygw bin/helm build node-bins
	REMORA_E2E_IMAGES=$$(IMAGE=$(IMAGE) hack/e2e-images.sh) hack/demo-cluster.sh

# The command-line demo: bin/remora against a throwaway PostgreSQL and S3
# server on this machine, no Kubernetes.
demo-cli: deps bin/versitygw build
	hack/demo.sh

# The runtime image, built with podman; without a registry the base and the
# builder are made locally (hack/image.sh, hack/podman-setup.sh).
IMAGE ?= localhost/remora:dev
image:
	hack/image.sh $(IMAGE)

# The node's Kubernetes binaries (kubelet, controller-manager, scheduler,
# kubectl), built once into a cache outside the clone (hack/node-binaries.sh).
node-bins: kube-bins
	@hack/node-binaries.sh >/dev/null

# End to end, the operator's path on a real one-node cluster (hack/node:
# kubelet, containerd, runc, the CNI bridge): helm install, a labelled
# namespace, the storage Secret, and PostgreSQL, MariaDB, Redis and files
# workloads backed up and restored by their sidecars. The images are built
# with podman (hack/e2e-images.sh) and imported into the node.
e2e: deps bin/versitygw bin/helm node-bins
	REMORA_E2E_IMAGES=$$(IMAGE=$(IMAGE) hack/e2e-images.sh) $(GO) test -tags e2e -count=1 -v -timeout 40m ./e2e

# Every fuzz target for FUZZTIME each (default 5m); a crash is saved under the
# package's testdata/fuzz and then runs with the regular tests.
FUZZTIME ?= 5m
FUZZ_TARGETS := ./spec:FuzzParse ./spec:FuzzReadFile ./schedule:FuzzParse \
	./repo/retention:FuzzPolicy ./repo:FuzzManifest ./storage:FuzzOpen ./webhook:FuzzAdmission \
	./drivers/mysql/binlog:FuzzVerifyFile
fuzz:
	@out=$$(mktemp); trap 'rm -f $$out' EXIT; for t in $(FUZZ_TARGETS); do pkg=$${t%%:*}; fn=$${t##*:}; echo "== $$pkg $$fn"; \
	  if ! $(GO) test $$pkg -run '^$$' -fuzz "^$$fn\$$" -fuzztime $(FUZZTIME) >$$out 2>&1; then cat $$out; exit 1; fi; \
	  grep 'execs:' $$out | tail -1; done

# The random fault tests with a fresh seed each round (printed, to replay a
# failure with REMORA_FAULT_SEED=N) and more kill points: SOAK_ROUNDS rounds.
SOAK_ROUNDS ?= 3
soak: deps bin/versitygw bin/fake-gcs-server bin/azurite
	@out=$$(mktemp); trap 'rm -f $$out' EXIT; for i in $$(seq $(SOAK_ROUNDS)); do \
	  seed=$$(od -An -N4 -tu4 /dev/urandom | tr -d ' '); echo "== round $$i: REMORA_FAULT_SEED=$$seed"; \
	  for t in './tests/faults TestKillAnywhere|TestBackupThroughFaultyNetwork' './repo/retention TestKeepRandomPolicies'; do \
	    set -- $$t; \
	    if ! REMORA_FAULT_SEED=$$seed REMORA_KILL_POINTS=$${REMORA_KILL_POINTS:-100} $(GO) test -count=1 -timeout 60m -v -run "$$2" $$1 >$$out 2>&1; then \
	      cat $$out; echo "soak: failed with REMORA_FAULT_SEED=$$seed"; exit 1; fi; \
	    grep -E '^(--- |ok )|_test.go:' $$out; \
	  done; \
	done

clean:
	rm -rf bin

# Benchmarks against baselines measured in the same run. Knobs:
# REMORA_BENCH_MIB (database size, default 2048), REMORA_BENCH_STORAGE_MIB (the
# file each storage backend receives, default 1024), REMORA_BENCH_ROUNDS (default 3).
bench: deps bin/versitygw bin/fake-gcs-server bin/azurite
	$(GO) test -run '^$$' -bench . -benchtime 1x -timeout 90m ./bench
