// Command scalebench measures how drayage's costs grow, for scripts/scale.sh (make scale):
//
//	scalebench gossip [-nodes N] [-profile P] [-out F]   a simulated cluster of N nodes
//	scalebench figure -out F -figure NAME -value V -unit U [-detail D]
//	scalebench table F                                  the figures with their goals
//
// Figures go to the file -out names, one JSON line each, and to stderr; table prints
// them with the goal beside each.
package main

import (
	"errors"
	"fmt"
	"os"
	"time"
)

func main() {
	if len(os.Args) < 2 {
		fail(errors.New("usage: scalebench gossip, figure or table"))
	}
	var err error
	switch os.Args[1] {
	case "gossip":
		err = runGossip(os.Args[2:])
	case "figure":
		err = runFigure(os.Args[2:])
	case "table":
		err = runTable(os.Args[2:])
	default:
		err = fmt.Errorf("scalebench: no command %q", os.Args[1])
	}
	if err != nil {
		fail(err)
	}
}

func logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, time.Now().Format("15:04:05 ")+format+"\n", args...)
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "scalebench:", err)
	os.Exit(1)
}
