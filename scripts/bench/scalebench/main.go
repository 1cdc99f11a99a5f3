// Command scalebench measures how drayage's costs grow, for scripts/scale.sh (make scale):
//
//	scalebench gossip [-nodes N]    a simulated cluster of N nodes on drayage's gossip
//
// Each prints what it measured as JSON on stdout and its progress on stderr.
package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"time"
)

func main() {
	if len(os.Args) < 2 {
		fail(errors.New("usage: scalebench gossip"))
	}
	var err error
	switch os.Args[1] {
	case "gossip":
		err = runGossip(os.Args[2:])
	default:
		err = fmt.Errorf("scalebench: no command %q", os.Args[1])
	}
	if err != nil {
		fail(err)
	}
}

func printJSON(v any) error {
	enc := json.NewEncoder(os.Stdout)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

func logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, time.Now().Format("15:04:05 ")+format+"\n", args...)
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "scalebench:", err)
	os.Exit(1)
}
