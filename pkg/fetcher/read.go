package fetcher

import (
	"bytes"
	"compress/gzip"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
)

var errTooLarge = errors.New("body too large")

// readBody reads a response body of the given Content-Encoding ("" or gzip),
// decoded, failing with errTooLarge past max decoded bytes. size is the
// Content-Length, -1 when unknown.
//
// The decoded payload is read into a buffer of its final size whenever that
// size is known in advance: from Content-Length for a plain body, and for
// gzip from the stream's trailer (ISIZE), read after the compressed bytes.
// So a 20 MB payload costs 20 MB plus its compressed form, not the 40–60 MB
// of a buffer that keeps doubling.
func readBody(r io.Reader, encoding string, max, size int64) ([]byte, error) {
	if encoding != "gzip" {
		return readAll(r, max, size)
	}
	compressed, err := readAll(r, max, size)
	if err != nil {
		return nil, err
	}
	if len(compressed) < 18 { // a gzip header and trailer at the least
		return nil, fmt.Errorf("gzip body of %d bytes is truncated", len(compressed))
	}
	// ISIZE is the last member's size mod 2^32: a hint, checked below.
	hint := int64(binary.LittleEndian.Uint32(compressed[len(compressed)-4:]))
	if hint > max {
		return nil, errTooLarge
	}
	zr, err := gzip.NewReader(bytes.NewReader(compressed))
	if err != nil {
		return nil, fmt.Errorf("gzip: %w", err)
	}
	body, err := readAll(zr, max, hint)
	if err != nil {
		return nil, fmt.Errorf("gzip: %w", err)
	}
	return body, nil
}

// readAll reads r to the end, failing with errTooLarge past max bytes.
//
// With a size hint it reads into one buffer of that capacity (plus a byte,
// so the read that reports the end needs no room), growing only if the hint
// was low. Without one it fills chunks that double up to 4 MiB and joins them
// once at the end: about twice the payload at the peak instead of the three
// times a doubling buffer reaches when it copies itself into a bigger one.
func readAll(r io.Reader, max, sizeHint int64) ([]byte, error) {
	if sizeHint >= 0 && sizeHint <= max {
		buf := make([]byte, 0, sizeHint+1)
		for {
			if len(buf) == cap(buf) {
				buf = append(buf, 0)[:len(buf)] // the hint was low: grow
			}
			n, err := r.Read(buf[len(buf):cap(buf)])
			buf = buf[:len(buf)+n]
			if int64(len(buf)) > max {
				return nil, errTooLarge
			}
			if err == io.EOF {
				return buf, nil
			}
			if err != nil {
				return nil, err
			}
		}
	}

	var (
		chunks [][]byte
		total  int64
		size   = 32 << 10
	)
	for {
		chunk := make([]byte, size)
		n, err := io.ReadFull(r, chunk)
		total += int64(n)
		if total > max {
			return nil, errTooLarge
		}
		chunks = append(chunks, chunk[:n])
		if err == io.EOF || err == io.ErrUnexpectedEOF {
			break
		}
		if err != nil {
			return nil, err
		}
		if size < 4<<20 {
			size *= 2
		}
	}
	if len(chunks) == 1 {
		return chunks[0], nil
	}
	out := make([]byte, 0, total)
	for _, c := range chunks {
		out = append(out, c...)
	}
	return out, nil
}
