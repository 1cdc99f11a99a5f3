#!/usr/bin/env bash
# Builds the external servers the integration tests run against into .tools/bin, from the
# Go module proxy (there are no prebuilt downloads to use). Skips a binary that is already
# there at the pinned version. Usage: scripts/build-tools.sh consul|nomad|versitygw
#
# Consul is pinned in its own module, scripts/tools (go.mod, go.sum, tools.go), so that the
# main module never inherits Consul's ~580-module dependency tree. To move to another
# Consul release, change its version in scripts/tools/go.mod, redo the checks its comment
# describes (Consul's own replace and exclude lines do not apply there), and run
# GOFLAGS=-mod=mod GONOSUMDB=github.com/hashicorp/consul go mod tidy in scripts/tools.
#
# Nomad is pinned the same way in scripts/tools/nomad, a module of its own because it cannot
# share Consul's build list (its go.mod says why). To move to another Nomad release, start
# from a go.mod holding only the module, go and replace lines, and run
# GOFLAGS=-mod=mod GONOSUMDB=github.com/hashicorp/nomad go get github.com/hashicorp/nomad@VERSION github.com/hashicorp/nomad/api@COMMIT
# there, COMMIT being the release tag's commit; not go mod tidy, which follows the tests of
# Nomad's dependencies and upgrades modules Nomad's go.mod pins. Then redo its comment's checks.
# versitygw (the S3 server of the seeding tests) is pinned the same way in
# scripts/tools/versitygw; to move to another release, change its version there and run
# GOFLAGS=-mod=mod go mod tidy in that directory.
source "$(dirname "$0")/go-env.sh"
cd "$(dirname "$0")/.."

build_consul() {
	local want bin="$PWD/.tools/bin/consul"
	want=$(awk '{for (i = 1; i < NF; i++) if ($i == "github.com/hashicorp/consul") {print $(i+1); exit}}' \
		scripts/tools/go.mod)
	[ -n "$want" ] || die "scripts/tools/go.mod does not require github.com/hashicorp/consul"
	if [ -x "$bin" ] && [ "$("$bin" version 2>/dev/null | head -1)" = "Consul $want" ]; then
		log "consul $want is already built: $bin"
		return 0
	fi
	log "building consul $want into $bin (takes several minutes the first time)"
	mkdir -p .tools/bin
	(cd scripts/tools && GOFLAGS=-mod=mod GONOSUMDB=github.com/hashicorp/consul CGO_ENABLED=0 \
		go build -trimpath -ldflags '-s -w' -o "$bin.tmp" github.com/hashicorp/consul)
	mv "$bin.tmp" "$bin"
	[ "$("$bin" version | head -1)" = "Consul $want" ] || die "$bin does not report version $want"
	log "built consul $want"
}

build_nomad() {
	local want bin="$PWD/.tools/bin/nomad"
	want=$(awk '{for (i = 1; i < NF; i++) if ($i == "github.com/hashicorp/nomad") {print $(i+1); exit}}' \
		scripts/tools/nomad/go.mod)
	[ -n "$want" ] || die "scripts/tools/nomad/go.mod does not require github.com/hashicorp/nomad"
	if [ -x "$bin" ] && [ "$("$bin" version 2>/dev/null | head -1)" = "Nomad $want" ]; then
		log "nomad $want is already built: $bin"
		return 0
	fi
	# cgo: the exec driver, built in, uses runc's libcontainer/nsenter, which is C.
	command -v cc >/dev/null || apt_install gcc libc6-dev
	log "building nomad $want into $bin (takes several minutes the first time)"
	mkdir -p .tools/bin
	(cd scripts/tools/nomad && GOFLAGS=-mod=mod GONOSUMDB=github.com/hashicorp/nomad CGO_ENABLED=1 \
		go build -trimpath -ldflags '-s -w' -o "$bin.tmp" github.com/hashicorp/nomad)
	mv "$bin.tmp" "$bin"
	[ "$("$bin" version | head -1)" = "Nomad $want" ] || die "$bin does not report version $want"
	log "built nomad $want"
}

build_versitygw() {
	local want bin="$PWD/.tools/bin/versitygw"
	want=$(awk '{for (i = 1; i < NF; i++) if ($i == "github.com/versity/versitygw") {print $(i+1); exit}}' \
		scripts/tools/versitygw/go.mod)
	[ -n "$want" ] || die "scripts/tools/versitygw/go.mod does not require github.com/versity/versitygw"
	if [ -x "$bin" ] && [ "$(cat "$bin.version" 2>/dev/null)" = "$want" ]; then
		log "versitygw $want is already built: $bin"
		return 0
	fi
	log "building versitygw $want into $bin (takes a few minutes the first time)"
	mkdir -p .tools/bin
	(cd scripts/tools/versitygw && GOFLAGS=-mod=mod CGO_ENABLED=0 \
		go build -trimpath -ldflags '-s -w' -o "$bin.tmp" github.com/versity/versitygw/cmd/versitygw)
	mv "$bin.tmp" "$bin"
	echo "$want" >"$bin.version"
	log "built versitygw $want"
}

case "${1:-}" in
consul) build_consul ;;
nomad) build_nomad ;;
versitygw) build_versitygw ;;
*) die "usage: scripts/build-tools.sh consul|nomad|versitygw" ;;
esac
