package embedded

import (
	"bytes"
	"log/slog"
	"testing"

	"github.com/stretchr/testify/assert"
	"go.uber.org/zap"
)

// etcd's errors stay out of the log; its fatal words reach it, with their fields.
func TestOnlyEtcdsLastWordsAreLogged(t *testing.T) {
	var out bytes.Buffer
	l := lastWordsLogger(slog.New(slog.NewTextHandler(&out, nil))).With(zap.String("member", "node-c"))
	l.Error("failed to publish local member to cluster through raft")
	l.Warn("slow fdatasync")
	assert.Empty(t, out.String())
	func() {
		defer func() { _ = recover() }()
		l.Panic("failed to save Raft hard state and entries", zap.Error(errNoSpace))
	}()
	assert.Contains(t, out.String(), "the embedded store member failed")
	assert.Contains(t, out.String(), "failed to save Raft hard state and entries")
	assert.Contains(t, out.String(), "no space left on device")
	assert.Contains(t, out.String(), "member=node-c")
}

var errNoSpace = errString("write /var/lib/drayage/store/member/wal/0.tmp: no space left on device")

type errString string

func (e errString) Error() string { return string(e) }
