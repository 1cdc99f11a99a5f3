#!/usr/bin/env bash
# make lint: gofmt, go vet and golangci-lint (built once into .tools/bin).
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/go-env.sh"
cd "$(dirname "$0")/.."

golangci_version=v2.15.0
lint="$PWD/.tools/bin/golangci-lint-$golangci_version"

log "gofmt"
unformatted=$(gofmt -l $(git ls-files '*.go' 2>/dev/null || find . -name '*.go' -not -path './.tools/*'))
[ -z "$unformatted" ] || die "gofmt would change: $unformatted (run gofmt -w)"
log "go vet"
go vet ./...
if [ ! -x "$lint" ]; then
	log "building golangci-lint $golangci_version (once)"
	mkdir -p .tools/bin
	GOBIN="$PWD/.tools/bin" go install "github.com/golangci/golangci-lint/v2/cmd/golangci-lint@$golangci_version"
	mv .tools/bin/golangci-lint "$lint"
fi
log "golangci-lint"
"$lint" run ./...
