//go:build tools

// Package tools pins the Nomad agent that the integration tests run against. It is a module
// of its own, apart from the Consul one in the directory above, because the two cannot share
// a build list (see go.mod); scripts/build-tools.sh builds the binary from here.
package tools

import _ "github.com/hashicorp/nomad"
