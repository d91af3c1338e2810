# gthulhu: build, test (host checks + VM tests on sched_ext kernels), run, vmlinux.
# The host kernel usually lacks sched_ext, so VM tests boot Debian cloud kernels with
# virtme-ng (scripts/vm.sh); on a host that has /sys/kernel/sched_ext they run here.

# build.rs compiles the BPF side with $CLANG; bookworm's default clang 14 is too old.
CLANG ?= clang-19
export CLANG
CARGO ?= cargo
# Kernels for the VM tests: fetch-kernel.sh channels, or KERNEL=/path/to/vmlinuz.
KERNELS ?= backports sid
KERNEL ?=
BIN := target/release/gthulhu
HAS_SCX := $(wildcard /sys/kernel/sched_ext)
SUDO := $(if $(filter 0,$(shell id -u)),,sudo)

.PHONY: all build deps lint unit vm-test test run vmlinux clean

all: build

build:
	$(CARGO) build --release

deps:
	scripts/host-deps.sh

lint: deps
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --all-targets --release -- -D warnings

unit: deps
	$(CARGO) test --release

# The guest sees the host's target/ read-only, so build before booting.
vm-test: deps build
	scripts/vm-tests.sh $(or $(KERNEL),$(KERNELS))

# Serial make runs these left to right: cheap checks first, VM tests last.
test: deps lint unit vm-test

ifneq ($(HAS_SCX),)
run: build
	$(SUDO) $(BIN) $(if $(wildcard config/gthulhu.yaml),--config config/gthulhu.yaml)
else
# No sched_ext here: boot the backports kernel and show gthulhu under a demo load.
run: deps build
	scripts/vm.sh "$$(scripts/fetch-kernel.sh backports)" scripts/vm-demo.sh
endif

vmlinux:
	scripts/vmlinux.sh

clean:
	$(CARGO) clean
	rm -rf results
