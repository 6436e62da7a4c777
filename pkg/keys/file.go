package keys

import (
	"errors"
	"fmt"
	"io"
	"os"
)

// MaxFileSize caps every file the worker reads: the SDK keys file (at start
// and in the watcher), the *_FILE secrets and the PEM files. A keys file of
// 4 MiB holds over 100,000 keys; a PEM bundle of every public root is about
// 250 KB. Without a cap, a path that names /dev/zero, a FIFO fed by a runaway
// writer or a mistakenly mounted image would grow the process until the
// kernel kills it, instead of giving a configuration error.
const MaxFileSize = 4 << 20

// ErrFileTooLarge is the error (inside an *os.PathError) of ReadFile for a
// file longer than MaxFileSize.
var ErrFileTooLarge = fmt.Errorf("file is larger than the %d MiB limit", MaxFileSize>>20)

// ReadFile is os.ReadFile with the MaxFileSize cap. It reads at most one byte
// more than the cap, so that endless sources (/dev/zero, a FIFO) stop too,
// where a size check on Stat would see 0 and read forever. It lives here
// because the keys file is what it was written for and pkg/keyfile may import
// only this package; the configuration and the Redis password re-reads use it
// so that there is one limit and one message.
func ReadFile(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, MaxFileSize+1))
	if err != nil {
		return nil, &os.PathError{Op: "read", Path: path, Err: unwrapPath(err)}
	}
	if len(data) > MaxFileSize {
		return nil, &os.PathError{Op: "read", Path: path, Err: ErrFileTooLarge}
	}
	return data, nil
}

func unwrapPath(err error) error {
	var pe *os.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}
