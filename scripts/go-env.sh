# Puts a Go toolchain new enough for go.mod on PATH; source it. A machine without one gets
# Debian's golang-go, which then fetches the exact toolchain go.mod names as the
# golang.org/toolchain module (as 'go' itself does with GOTOOLCHAIN) into .tools/.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

_repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
_want=$(awk '/^go /{print $2; exit}' "$_repo/go.mod")
_tools="$_repo/.tools"

# go_ok GO: GO runs and is at least the version go.mod needs.
go_ok() {
	local have
	have=$("$1" env GOVERSION 2>/dev/null) || return 1
	have=${have#go}
	[ "$(printf '%s\n%s\n' "$_want" "$have" | sort -V | head -1)" = "$_want" ]
}

ensure_go() {
	local candidate
	for candidate in "$(command -v go 2>/dev/null)" /usr/local/go/bin/go "$_tools/go/bin/go"; do
		if [ -n "$candidate" ] && go_ok "$candidate"; then
			export PATH="$(dirname "$candidate"):$PATH"
			return 0
		fi
	done
	log "no Go $_want found; fetching the toolchain module go$_want"
	apt_install golang-go ca-certificates
	local arch mod tmp
	arch=$(dpkg --print-architecture)
	mod="golang.org/toolchain@v0.0.1-go$_want.linux-$arch"
	tmp=$(mktemp -d)
	(cd "$tmp" && GOPATH="$tmp/gopath" GOFLAGS=-mod=mod /usr/bin/go mod download "$mod") ||
		die "could not download $mod from the Go module proxy"
	rm -rf "$_tools/go"
	mkdir -p "$_tools"
	cp -r "$tmp/gopath/pkg/mod/$mod" "$_tools/go"
	chmod -R u+w "$tmp" "$_tools/go" && rm -rf "$tmp"
	chmod +x "$_tools/go/bin/"* "$_tools/go/pkg/tool/"*/*
	go_ok "$_tools/go/bin/go" || die "the fetched toolchain in $_tools/go does not run"
	export PATH="$_tools/go/bin:$PATH"
}

ensure_go
export GOTOOLCHAIN=local
