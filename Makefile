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

PREFIX ?= /usr/local
DESTDIR ?=
UNITDIR ?= $(PREFIX)/lib/systemd/system
IMAGE ?= 127.0.0.1:32000/gthulhu:latest

.PHONY: all build deps lint unit deploy-test vm-test test run bench vmlinux image install clean

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

# Helm chart (lint, render, schema checks) and the systemd unit.
deploy-test: build
	tests/deploy/run.sh

# The guest sees the host's target/ read-only, so build before booting.
vm-test: deps build
	scripts/vm-tests.sh $(or $(KERNEL),$(KERNELS))

# Serial make runs these left to right: cheap checks first, VM tests last.
test: deps lint unit deploy-test vm-test

ifneq ($(HAS_SCX),)
run: build
	$(SUDO) $(BIN) $(if $(wildcard config/gthulhu.yaml),--config config/gthulhu.yaml)
else
# No sched_ext here: boot the backports kernel and show gthulhu under a demo load.
run: deps build
	scripts/vm.sh "$$(scripts/fetch-kernel.sh backports)" scripts/vm-demo.sh
endif

# Latency, throughput and overhead side by side with EEVDF (and scx_rustland).
bench: deps build
	scripts/bench.sh

vmlinux:
	scripts/vmlinux.sh

# Container image with a static binary (docker or buildah); PUSH=1 pushes it.
image:
	IMAGE=$(IMAGE) scripts/image.sh

# Binary, systemd unit, and an example config that never replaces an existing one.
install: build
	install -D -m 0755 $(BIN) $(DESTDIR)$(PREFIX)/bin/gthulhu
	install -d -m 0755 $(DESTDIR)$(UNITDIR) $(DESTDIR)/etc/gthulhu
	sed 's|/usr/local/bin/gthulhu|$(PREFIX)/bin/gthulhu|' systemd/gthulhu.service > $(DESTDIR)$(UNITDIR)/gthulhu.service
	chmod 0644 $(DESTDIR)$(UNITDIR)/gthulhu.service
	test -e $(DESTDIR)/etc/gthulhu/gthulhu.yaml || install -m 0644 config/gthulhu.yaml $(DESTDIR)/etc/gthulhu/gthulhu.yaml

clean:
	$(CARGO) clean
	rm -rf results
