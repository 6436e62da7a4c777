package fetcher

import (
	"errors"
	"io"
)

var errTooLarge = errors.New("body too large")

// readAll reads r to the end into one exactly sized slice, failing with
// errTooLarge past max bytes.
//
// With a known size it reads straight into a buffer of that size. Otherwise
// (a gzip body, whose decoded size is unknown) it fills chunks that double up
// to 4 MiB and joins them once at the end, so the peak is about twice the
// payload instead of the three times a doubling buffer reaches when it copies
// itself into a bigger one.
func readAll(r io.Reader, max, sizeHint int64) ([]byte, error) {
	if sizeHint >= 0 && sizeHint <= max {
		// net/http stops a body at its Content-Length, so this reads it exactly.
		buf := make([]byte, sizeHint)
		if _, err := io.ReadFull(r, buf); err != nil {
			return nil, err
		}
		return buf, nil
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
