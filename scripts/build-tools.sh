#!/usr/bin/env bash
# Builds the external servers the integration tests run against into .tools/bin, from the
# Go module proxy (there are no prebuilt downloads to use). Skips a binary that is already
# there at the pinned version. Usage: scripts/build-tools.sh consul
#
# Consul is pinned in its own module, scripts/tools (go.mod, go.sum, tools.go), so that the
# main module never inherits Consul's ~580-module dependency tree. To move to another
# Consul release, change its version in scripts/tools/go.mod, redo the checks its comment
# describes (Consul's own replace and exclude lines do not apply there), and run
# GOFLAGS=-mod=mod GONOSUMDB=github.com/hashicorp/consul go mod tidy in scripts/tools.
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

case "${1:-}" in
consul) build_consul ;;
*) die "usage: scripts/build-tools.sh consul" ;;
esac
