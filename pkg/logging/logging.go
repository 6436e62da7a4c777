// Package logging builds the worker's zerolog logger: JSON lines by default,
// a human-readable console format on request.
package logging

import (
	"context"
	"io"
	"time"

	"github.com/rs/zerolog"
)

// New returns a logger writing to w at level, as "json" or "console".
func New(w io.Writer, level zerolog.Level, format string) zerolog.Logger {
	if format == "console" {
		w = zerolog.ConsoleWriter{Out: w, TimeFormat: time.RFC3339}
	}
	zerolog.TimeFieldFormat = time.RFC3339Nano
	return zerolog.New(w).Level(level).With().Timestamp().Logger()
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
