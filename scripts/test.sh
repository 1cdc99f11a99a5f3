#!/usr/bin/env bash
# make test: lint, unit tests, then integration tests against real servers. Installs what
# it needs. Usage: scripts/test.sh [all|unit|integration|chaos]   (default all)
# chaos runs only the fault campaign (integration/chaos_test.go), for as long as
# CHAOS_ROUNDS asks: a soak has no time limit.
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/go-env.sh"
cd "$(dirname "$0")/.."

what=${1:-all}
[ "$(id -u)" -eq 0 ] || die "the tests mount volumes and drive Docker engines: run as root (sudo make test)"
command -v gcc >/dev/null || apt_install gcc libc6-dev  # for -race

if [ "$what" = all ]; then
	scripts/lint.sh
fi
# Real servers for the store conformance suite and the cluster tests: Debian's etcd, and
# a Consul agent built from its Go module (minutes, the first time; cached in .tools/).
apt_install etcd-server etcd-client  # etcdctl: the cluster test reads the records with it
scripts/build-tools.sh consul
export DRAYAGE_CONSUL="$PWD/.tools/bin/consul"
# An S3 server for the seeding tests: versitygw, built from its Go module the same way.
scripts/build-tools.sh versitygw
export DRAYAGE_VERSITYGW="$PWD/.tools/bin/versitygw"
if [ "$what" = all ] || [ "$what" = unit ]; then
	log "unit tests"
	go test -race -count=1 $(go list ./... | grep -v /integration)
	log "fuzzing the transfer engine's decoders (short runs; the corpus is in testdata/fuzz)"
	# A count, not a duration: when a duration ends mid-execution Go's fuzzer reports
	# "context deadline exceeded" as a failure.
	for target in FuzzDecodeManifest FuzzFrameReader FuzzWantRequest; do
		go test -run='^$' -fuzz="^$target\$" -fuzztime=150000x ./daemon/transfer/
	done
	# The whole receiver (a sink fed arbitrary streams): a few thousand runs a second, each
	# on a fresh staging dir; a new finding is minimized briefly.
	go test -run='^$' -fuzz='^FuzzReceive$' -fuzztime=30000x -fuzzminimizetime=200x ./daemon/transfer/
fi
if [ "$what" = all ] || [ "$what" = integration ]; then
	log "integration tests (real Docker engine)"
	ensure_docker
	apt_install busybox-static iproute2 util-linux iptables e2fsprogs docker-registry
	# A Nomad agent for the Nomad job test, built from its Go module (minutes, the first
	# time; cached in .tools/).
	scripts/build-tools.sh nomad
	export DRAYAGE_NOMAD="$PWD/.tools/bin/nomad"
	go test -count=1 -timeout 50m -v ./integration/
fi
if [ "$what" = chaos ]; then
	log "fault campaign (CHAOS_SEED=${CHAOS_SEED:-fixed and random} CHAOS_ROUNDS=${CHAOS_ROUNDS:-4} CHAOS_STORE=${CHAOS_STORE:-embedded, then etcd})"
	ensure_docker
	apt_install busybox-static iproute2 util-linux iptables e2fsprogs
	go test -count=1 -timeout 0 -v -run '^TestChaos$' ./integration/
fi
