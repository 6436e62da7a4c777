// Package logging builds the worker's zerolog logger: JSON lines by default,
// a human-readable console format on request.
//
// Duration fields (zerolog's Dur) are written as seconds, as a decimal
// number: "interval":10, "lease":1.5. zerolog's default, whole
// milliseconds, gave bare numbers that read as seconds next to the
// *_seconds metrics and lost sub-millisecond values.
package logging

import (
	"context"
	"io"
	"os"
	"sync"
	"time"

	"github.com/rs/zerolog"
)

var setGlobals sync.Once

// New returns a logger writing to w at level, as "json" or "console". The
// console format is coloured only when w is a terminal: escape codes in a
// pipe, a file or a log collector are noise that breaks grep.
func New(w io.Writer, level zerolog.Level, format string) zerolog.Logger {
	// zerolog keeps these settings in package variables; set them once, so
	// that loggers made concurrently (tests, a second logger for a
	// sub-command) do not race on them.
	setGlobals.Do(func() {
		zerolog.TimeFieldFormat = time.RFC3339Nano
		zerolog.DurationFieldUnit = time.Second
		zerolog.DurationFieldInteger = false
	})
	if format == "console" {
		w = zerolog.ConsoleWriter{Out: w, TimeFormat: time.RFC3339, NoColor: !isTerminal(w)}
	}
	return zerolog.New(w).Level(level).With().Timestamp().Logger()
}

// isTerminal reports whether w is a character device such as a terminal. A
// character device that is not a terminal (/dev/null) also counts, which is
// harmless: nobody reads the colours there.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}

// RedisLogger routes go-redis's own messages (dial retries and the like) into
// the worker's log at debug level; the worker reports Redis failures itself.
func RedisLogger(log zerolog.Logger) RedisLog {
	return RedisLog{log.With().Str("component", "go-redis").Logger()}
}

// RedisLog implements go-redis's internal logging interface.
type RedisLog struct{ log zerolog.Logger }

func (l RedisLog) Printf(_ context.Context, format string, v ...any) {
	l.log.Debug().Msgf(format, v...)
}
