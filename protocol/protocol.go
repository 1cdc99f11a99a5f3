// Package protocol is the version of what drayage nodes say to each other: the control
// calls between nodes, the transfer engine's data frames, and the records in the
// cluster store. A build speaks a range of versions, Oldest to Newest: a node of the
// next release speaks this release's version too, so a cluster is upgraded one node at a
// time with volumes moving both ways. Two nodes whose ranges do not meet refuse each
// other's calls with an error naming both (peers checks it on every call), and 'drayage
// node ls' marks a member whose range differs from the asking node's.
//
// A release that changes any of the three raises Newest; one that can no longer speak
// an old version raises Oldest. A test build may pretend to speak other versions:
// -ldflags "-X github.com/drayage/drayage/protocol.forced=N" (or N-M).
package protocol

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// The versions this build speaks.
const (
	Oldest = 1
	Newest = 1
)

// forced, if set at build time ("N" or "N-M"), is the range the build claims to speak.
var forced string

// Range is the versions this build speaks, as it claims them.
type Range struct{ Oldest, Newest int }

// Own is this build's range.
func Own() Range {
	if r, err := Parse(forced); forced != "" && err == nil {
		return r
	}
	return Range{Oldest, Newest}
}

// String is the range as nodes send it: "1" or "1-2".
func (r Range) String() string {
	if r.Oldest == r.Newest {
		return strconv.Itoa(r.Newest)
	}
	return fmt.Sprintf("%d-%d", r.Oldest, r.Newest)
}

// ErrBadRange means a range was not written as String writes it.
var ErrBadRange = errors.New("not a protocol range")

// Parse reads what String wrote. "" is version 1: what nodes that sent no range spoke.
func Parse(s string) (Range, error) {
	if s == "" {
		return Range{1, 1}, nil
	}
	lo, hi, found := strings.Cut(s, "-")
	if !found {
		hi = lo
	}
	a, err1 := strconv.Atoi(lo)
	b, err2 := strconv.Atoi(hi)
	if err1 != nil || err2 != nil || a < 1 || b < a {
		return Range{}, fmt.Errorf("%w: %q", ErrBadRange, s)
	}
	return Range{a, b}, nil
}

// ErrIncompatible means two nodes speak no version in common.
var ErrIncompatible = errors.New("the nodes speak no protocol version in common")

// Common is the newest version both r and other speak, or an error naming both ranges
// (this node's first) and which node to upgrade.
func (r Range) Common(self, peer string, other Range) (int, error) {
	lo, hi := max(r.Oldest, other.Oldest), min(r.Newest, other.Newest)
	if lo <= hi {
		return hi, nil
	}
	older := peer
	if r.Newest < other.Oldest {
		older = self
	}
	return 0, fmt.Errorf("%w: node %q speaks protocol %s and node %q speaks %s; upgrade node %q (or run the same release on both)",
		ErrIncompatible, self, r, peer, other, older)
}
