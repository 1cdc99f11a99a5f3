//go:build tools

// Package tools pins the Consul agent that the integration tests run against. It is a
// module of its own so that the main module never inherits Consul's dependency tree;
// scripts/build-tools.sh builds the binary from here.
package tools

import _ "github.com/hashicorp/consul"
