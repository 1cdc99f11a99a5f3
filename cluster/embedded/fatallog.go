package embedded

import (
	"fmt"
	"log/slog"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// etcd's logs go nowhere but its last words: etcd ends the process on some failures (a
// full disk under its WAL or database: zap's Fatal exits whatever the logger), and
// without them the daemon would vanish without a line. Its errors otherwise are noise
// (every clean shutdown logs some); what matters reaches drayage as errors from Start or
// from the client.

// lastWordsLogger is a zap logger that writes only etcd's fatal and panic messages, to
// log.
func lastWordsLogger(log *slog.Logger) *zap.Logger {
	return zap.New(lastWords{log: log})
}

// lastWords is a zapcore.Core enabled for DPanic, Panic and Fatal only.
type lastWords struct {
	log    *slog.Logger
	fields []zapcore.Field
}

func (c lastWords) Enabled(l zapcore.Level) bool { return l >= zapcore.DPanicLevel }

func (c lastWords) With(fields []zapcore.Field) zapcore.Core {
	c.fields = append(c.fields[:len(c.fields):len(c.fields)], fields...)
	return c
}

func (c lastWords) Check(e zapcore.Entry, ce *zapcore.CheckedEntry) *zapcore.CheckedEntry {
	if c.Enabled(e.Level) {
		return ce.AddCore(e, c)
	}
	return ce
}

func (c lastWords) Write(e zapcore.Entry, fields []zapcore.Field) error {
	enc := zapcore.NewMapObjectEncoder()
	for _, f := range append(c.fields[:len(c.fields):len(c.fields)], fields...) {
		f.AddTo(enc)
	}
	args := []any{"level", e.Level.String(), "what", e.Message}
	for k, v := range enc.Fields {
		args = append(args, k, fmt.Sprint(v))
	}
	c.log.Error("the embedded store member failed and ends the daemon; the engine starts it again (a full disk under the state dir? free space there)", args...)
	return nil
}

func (c lastWords) Sync() error { return nil }
