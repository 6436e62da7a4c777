package keys

import (
	"bytes"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

func TestReadFile(t *testing.T) {
	dir := t.TempDir()
	write := func(name string, size int) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, bytes.Repeat([]byte("k"), size), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	cases := []struct {
		name    string
		path    string
		wantLen int
		wantErr error
	}{
		{"small", write("small", 10), 10, nil},
		{"empty", write("empty", 0), 0, nil},
		{"exactly the limit", write("limit", MaxFileSize), MaxFileSize, nil},
		{"one byte over", write("over", MaxFileSize+1), 0, ErrFileTooLarge},
		{"far over", write("big", 3*MaxFileSize), 0, ErrFileTooLarge},
		// Endless sources: an unbounded read would never return.
		{"dev zero", "/dev/zero", 0, ErrFileTooLarge},
		{"missing", filepath.Join(dir, "missing"), 0, fs.ErrNotExist},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			data, err := ReadFile(c.path)
			if c.wantErr == nil {
				if err != nil || len(data) != c.wantLen {
					t.Fatalf("ReadFile = %d bytes, %v; want %d bytes", len(data), err, c.wantLen)
				}
				return
			}
			if !errors.Is(err, c.wantErr) || data != nil {
				t.Fatalf("ReadFile = %d bytes, %v; want %v", len(data), err, c.wantErr)
			}
			var pe *os.PathError
			if !errors.As(err, &pe) || pe.Path != c.path {
				t.Fatalf("error %v is not a PathError naming the file", err)
			}
			if errors.Is(c.wantErr, ErrFileTooLarge) && !strings.Contains(err.Error(), "4 MiB") {
				t.Errorf("message %q does not say the limit", err)
			}
		})
	}
}

// A FIFO whose writer never stops must not be read forever.
func TestReadFileEndlessFIFO(t *testing.T) {
	p := filepath.Join(t.TempDir(), "fifo")
	if err := syscall.Mkfifo(p, 0o600); err != nil {
		t.Skipf("mkfifo: %v", err)
	}
	stop := make(chan struct{})
	defer close(stop)
	go func() {
		w, err := os.OpenFile(p, os.O_WRONLY, 0)
		if err != nil {
			return
		}
		defer w.Close()
		chunk := bytes.Repeat([]byte("x"), 64<<10)
		for {
			select {
			case <-stop:
				return
			default:
			}
			if _, err := w.Write(chunk); err != nil {
				return
			}
		}
	}()
	done := make(chan error, 1)
	go func() { _, err := ReadFile(p); done <- err }()
	select {
	case err := <-done:
		if !errors.Is(err, ErrFileTooLarge) {
			t.Fatalf("ReadFile(fifo) = %v, want ErrFileTooLarge", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("ReadFile of an endless FIFO did not return")
	}
}
