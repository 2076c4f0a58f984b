# gdrbd build and test targets. `make test` is what CI runs (.ci/run).
GO       ?= go
GOBIN    := $(shell $(GO) env GOPATH)/bin
BIN      := bin/gdrbd
PKGS     := ./...
export PATH := $(PATH):$(GOBIN)

.PHONY: all build static test unit race lint vet staticcheck fuzz fuzz-long bench sim sim-long e2e e2e-kernel demo clean

all: build

build:
	$(GO) build -o $(BIN) ./cmd/gdrbd

# A static binary for the qemu guest (no libc there).
static:
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '-s -w' -o bin/gdrbd-static ./cmd/gdrbd

# The whole suite CI runs, bounded to about 15 minutes on 2 cores.
test: lint race fuzz sim e2e e2e-kernel

unit:
	$(GO) test -count=1 $(PKGS)

# Every package under the race detector; the end-to-end tests (real
# processes, no Go code of ours racing in the test binary) run once, in e2e.
race:
	$(GO) test -race -count=1 -timeout 20m $$($(GO) list $(PKGS) | grep -v /e2e)

vet:
	$(GO) vet $(PKGS)

staticcheck:
	staticcheck $(PKGS)

lint: vet staticcheck
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || { gofmt -l $$(git ls-files '*.go'); echo "gofmt needed"; exit 1; }

# Every fuzz target for a short, bounded time (CI); fuzz-long for hours.
FUZZTIME ?= 10s
fuzz:
	scripts/fuzz-all.sh $(FUZZTIME)

fuzz-long:
	scripts/fuzz-all.sh 10m

# Seeded simulator: SIM_SEEDS runs in CI; sim-long for many more.
SIM_SEEDS ?= 2000
sim:
	$(GO) test -count=1 -timeout 15m ./replication/sim -run TestSimSeeds -sim.seeds=$(SIM_SEEDS)

sim-long:
	$(GO) test -count=1 -timeout 0 ./replication/sim -run TestSimSeeds -sim.seeds=100000

# gdrbd against the loop device and qemu-nbd (4k/1M writes, fsync latency,
# daemon memory) and its full resync against dd, bounded (about 1-2 minutes,
# root; says why and exits 0 otherwise). The full matrix and the Go
# micro-benchmarks: see bench/RESULTS.md.
bench: build
	$(GO) run ./bench/cmd/gdrbd-bench -quick -gdrbd $(BIN)

# Real processes (needs root): the user story on loop devices, two daemons
# on loopback and in network namespaces, kill -9, heartbeat's drbddisk.
e2e: build
	$(GO) test -count=1 -timeout 15m ./e2e/...

# Kernel NBD / kernel DRBD 8.4 in a qemu guest: the NBD server on
# /dev/nbdX, the daemon as Primary on it, and gdrbd paired with the real
# DRBD 8.4.11 kernel module.
KERNEL_TESTS ?= test/vm/guest/nbd-kernel.sh test/vm/guest/daemon-primary.sh test/vm/guest/drbd84-interop.sh test/vm/guest/drbd84-dual.sh
e2e-kernel: static
	EXTRA_MODS="drbd loop" EXTRA_DYN_BINS="/lib/drbd/drbdsetup-84 /usr/sbin/drbdmeta" \
		test/vm/run-kernel-tests.sh bin/gdrbd-static $(KERNEL_TESTS)

# A replicated pair on two loop devices, narrated (needs root).
demo: build
	scripts/demo.sh $(BIN)

clean:
	rm -rf bin
