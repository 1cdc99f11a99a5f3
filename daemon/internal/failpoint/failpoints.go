//go:build failpoints

package failpoint

import (
	"fmt"
	"os"
	"strings"
)

// Hit stops the process for good at name if DRAYAGE_FAILPOINTS lists it (comma-separated),
// after saying so on stderr: the test then kills the process, at exactly that point.
func Hit(name string) {
	for _, n := range strings.Split(os.Getenv("DRAYAGE_FAILPOINTS"), ",") {
		if n == name {
			fmt.Fprintf(os.Stderr, "failpoint %s reached\n", name)
			select {}
		}
	}
}
