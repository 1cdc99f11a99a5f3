package transfer

import (
	"os"
	"testing"

	"go.uber.org/goleak"
)

// Every test leaves no goroutine running: a Server's Close, a Pull's return and a
// source's or sink's Close end everything they started. A process started as a sender
// or receiver to be killed (kill_test.go) runs its role instead of the tests.
func TestMain(m *testing.M) {
	if spec := os.Getenv(helperEnv); spec != "" {
		os.Exit(runHelper(spec))
	}
	goleak.VerifyTestMain(m)
}
