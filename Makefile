# drayage: see README.md. Every target installs or builds what it needs (scripts/).
SHELL := /bin/bash
# Every Go command runs with a toolchain new enough for go.mod (scripts/go-env.sh).
GOENV := source scripts/go-env.sh &&
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
COMMIT ?= $(shell git rev-parse --short=12 HEAD 2>/dev/null || echo unknown)
LDFLAGS := -s -w -X main.version=$(VERSION) -X main.commit=$(COMMIT)
BIN ?= build/drayage
PLUGIN ?= drayage
TAG ?= dev
export PLUGIN TAG

.PHONY: all build plugin release test unit integration lint bench scale chaos demo clean

all: build

## build: the static drayage binary in build/drayage
build:
	$(GOENV) CGO_ENABLED=0 go build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN) ./cmd/drayage

## plugin: build the managed plugin and create it as $(PLUGIN):$(TAG) (left disabled)
plugin:
	scripts/build-plugin.sh

## release: build the plugin reproducibly and push it as $(REGISTRY)/drayage:$(VERSION) (REGISTRY=HOST[:PORT]/REPO VERSION=X)
release:
	scripts/release.sh

## test: unit tests, then integration tests against the real Docker engine
test:
	scripts/test.sh

## unit: unit tests only
unit:
	scripts/test.sh unit

## integration: integration tests only (real Docker engine; needs root)
integration:
	scripts/test.sh integration

## lint: gofmt, go vet and golangci-lint
lint:
	scripts/lint.sh

## chaos: the fault campaign on three nodes (short; CHAOS_ROUNDS=N CHAOS_SEED=S[,S] CHAOS_STORE=etcd for soaks and replays)
chaos:
	scripts/test.sh chaos

## bench: transfer engine against rsync over stunnel and tar, and replicated volumes on real engines (see scripts/bench.sh)
bench:
	scripts/bench.sh

## scale: how costs grow with nodes, volumes and files: a table of figures and goals (see scripts/scale.sh)
scale:
	scripts/scale.sh

## demo: the main flow, end to end
demo:
	scripts/demo.sh

clean:
	rm -rf build
