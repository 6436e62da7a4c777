package logging

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"
)

func TestIsTerminal(t *testing.T) {
	pr, pw, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer pr.Close()
	defer pw.Close()
	file, err := os.Create(filepath.Join(t.TempDir(), "log"))
	if err != nil {
		t.Fatal(err)
	}
	defer file.Close()
	devNull, err := os.OpenFile(os.DevNull, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer devNull.Close()
	cases := []struct {
		name string
		w    io.Writer
		want bool
	}{
		{"buffer", &bytes.Buffer{}, false},
		{"pipe", pw, false},
		{"regular file", file, false},
		{"character device", devNull, true},
	}
	for _, c := range cases {
		if got := isTerminal(c.w); got != c.want {
			t.Errorf("%s: isTerminal = %v, want %v", c.name, got, c.want)
		}
	}
}

// The console format writes no colour codes into a pipe or a file.
func TestConsoleWithoutColourOffTerminal(t *testing.T) {
	pr, pw, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	file, err := os.Create(filepath.Join(t.TempDir(), "log"))
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	for _, w := range []io.Writer{&buf, pw, file} {
		log := New(w, zerolog.InfoLevel, "console")
		log.Error().Str("k", "v").Dur("took", 1500*time.Millisecond).Msg("hello")
	}
	pw.Close()
	piped, _ := io.ReadAll(pr)
	written, _ := os.ReadFile(file.Name())
	file.Close()
	for name, out := range map[string]string{"buffer": buf.String(), "pipe": string(piped), "file": string(written)} {
		if !strings.Contains(out, "hello") {
			t.Errorf("%s: nothing written: %q", name, out)
		}
		if strings.Contains(out, "\x1b[") {
			t.Errorf("%s: colour codes written: %q", name, out)
		}
		if !strings.Contains(out, "took=1.5") {
			t.Errorf("%s: duration not in seconds: %q", name, out)
		}
	}
}

// Durations are decimal seconds, not whole milliseconds.
func TestDurationsInSeconds(t *testing.T) {
	cases := []struct {
		d    time.Duration
		want float64
	}{
		{1500 * time.Millisecond, 1.5},
		{10 * time.Second, 10},
		{15 * time.Minute, 900},
		{250 * time.Microsecond, 0.00025},
		{0, 0},
	}
	for _, c := range cases {
		var buf bytes.Buffer
		log := New(&buf, zerolog.InfoLevel, "json")
		log.Info().Dur("d", c.d).Msg("x")
		var entry map[string]any
		if err := json.Unmarshal(buf.Bytes(), &entry); err != nil {
			t.Fatalf("%s: %v: %s", c.d, err, buf.String())
		}
		if got, ok := entry["d"].(float64); !ok || got != c.want {
			t.Errorf("Dur(%s) logged as %v, want %v seconds", c.d, entry["d"], c.want)
		}
	}
}

func TestJSONAndLevel(t *testing.T) {
	var buf bytes.Buffer
	log := New(&buf, zerolog.WarnLevel, "json")
	log.Info().Msg("dropped")
	log.Warn().Msg("kept")
	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	if len(lines) != 1 || !strings.Contains(lines[0], `"message":"kept"`) || !strings.Contains(lines[0], `"time":"`) {
		t.Fatalf("output %q", buf.String())
	}
}

func TestRedisLogger(t *testing.T) {
	var buf bytes.Buffer
	RedisLogger(New(&buf, zerolog.DebugLevel, "json")).Printf(context.Background(), "dial %s failed", "x:1")
	if out := buf.String(); !strings.Contains(out, `"component":"go-redis"`) || !strings.Contains(out, "dial x:1 failed") || !strings.Contains(out, `"level":"debug"`) {
		t.Fatalf("output %q", out)
	}
}
