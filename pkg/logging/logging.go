// Package logging builds the worker's zerolog logger: JSON lines by default,
// a human-readable console format on request.
package logging

import (
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
