//go:build !failpoints

// Package failpoint marks the points of a move where a test kills the daemon: between
// installing a copy and committing it, and so on. In a normal build Hit does nothing and
// costs nothing; a build with -tags failpoints (integration/kill_test.go) stops there on
// request (failpoints.go).
package failpoint

// Hit marks the failpoint name.
func Hit(string) {}
