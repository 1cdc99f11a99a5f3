//go:build tools

// Package tools pins versitygw, the S3-compatible server (Apache-2.0) the seeding and
// backup tests run against (versitygw posix DIR), in a module of its own so that the
// main module never inherits its dependency tree; scripts/build-tools.sh builds it from
// here.
package tools

import _ "github.com/versity/versitygw/cmd/versitygw"
