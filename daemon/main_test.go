package daemon

import (
	"testing"

	"go.uber.org/goleak"
)

// Every test leaves no goroutine running: a daemon's Run returns only once everything it
// started has ended.
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }
