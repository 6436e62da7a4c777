package fetcher

import (
	"bytes"
	"compress/gzip"
	"encoding/binary"
	"errors"
	"io"
)

var errTooLarge = errors.New("body too large")

const (
	// announcedReserve bounds what a Content-Length can make readAll reserve
	// before the bytes arrive: a server announcing MAX_PAYLOAD_BYTES and
	// sending ten must not cost MAX_PAYLOAD_BYTES.
	announcedReserve = 1 << 20
	// A gzip trailer (ISIZE) is believed as the decoded size only up to this
	// multiple of the compressed size plus trustedSlack. JSON payloads stay
	// below that ratio, so they are still read into one buffer of their final
	// size; a trailer that claims more than that comes from a bomb, a liar or
	// very repetitive data, and is measured before anything is allocated.
	trustedRatio = 16
	trustedSlack = 16 << 10
)

// readBody reads a response body of the given Content-Encoding ("" or gzip),
// decoded, failing with errTooLarge past limit decoded bytes. size is the
// Content-Length, -1 when unknown. An error from r (the network) is returned
// as it is; a gzip stream that arrived whole but does not decode is an
// *InvalidPayloadError of reason bad_encoding.
//
// Nothing the server says about sizes is allocated before it is shown to be
// true: Content-Length reserves at most announcedReserve up front, and a
// gzip trailer (ISIZE) at most trustedRatio times the compressed bytes that
// arrived. Past those, buffers grow as decoded bytes actually come.
func readBody(r io.Reader, encoding string, limit, size int64) ([]byte, error) {
	if encoding != "gzip" {
		return readAll(r, limit, size, announcedReserve)
	}
	compressed, err := readAll(r, limit, size, announcedReserve)
	if err != nil {
		return nil, err
	}
	return gunzip(compressed, limit)
}

// gunzip decodes a gzip stream (one or more members) held in memory, so any
// error it meets is the stream's, not the network's.
//
// The decoded payload is read into a buffer of its final size whenever that
// size is known: a 20 MB payload costs 20 MB plus its compressed form, not
// the 40–60 MB of a buffer that keeps doubling. The size comes from the
// trailer when that is plausible for the compressed size, and otherwise from
// decoding the stream once into io.Discard (which also finds a bomb or a
// corrupt stream without allocating for it).
func gunzip(compressed []byte, limit int64) ([]byte, error) {
	zr, err := gzip.NewReader(bytes.NewReader(compressed))
	if err != nil {
		return nil, badEncoding(err)
	}
	// ISIZE is the last member's size mod 2^32: a hint, never a promise.
	size := int64(binary.LittleEndian.Uint32(compressed[len(compressed)-4:]))
	if size > min(limit, trustedRatio*int64(len(compressed))+trustedSlack) {
		n, err := io.Copy(io.Discard, io.LimitReader(zr, limit+1))
		if err != nil {
			return nil, badEncoding(err)
		}
		if n > limit {
			return nil, errTooLarge
		}
		if err := zr.Reset(bytes.NewReader(compressed)); err != nil {
			return nil, badEncoding(err)
		}
		size = n
	}
	body, err := readAll(zr, limit, size, size)
	if err != nil && err != errTooLarge {
		return nil, badEncoding(err)
	}
	return body, err
}

func badEncoding(err error) *InvalidPayloadError {
	return invalid("bad_encoding", "gzip: %v", err)
}

// readAll reads r to the end, failing with errTooLarge past limit bytes.
//
// With a size hint it reads into one buffer of that capacity (plus a byte,
// so the read that reports the end needs no room) if the hint is at most
// reserve; a larger hint starts at reserve and doubles towards it as bytes
// arrive, so a false hint costs at most twice what was really read. A low
// hint grows the same way. Without a hint it fills chunks that double up
// to 4 MiB and joins them once at the end: about twice the payload at the
// peak instead of the three times a doubling buffer reaches when it copies
// itself into a bigger one.
func readAll(r io.Reader, limit, sizeHint, reserve int64) ([]byte, error) {
	if sizeHint >= 0 {
		hint := min(sizeHint, limit)
		buf := make([]byte, 0, min(hint, max(reserve, 0))+1)
		for {
			if len(buf) == cap(buf) {
				buf = grow(buf, hint, limit)
			}
			n, err := r.Read(buf[len(buf):cap(buf)])
			buf = buf[:len(buf)+n]
			if int64(len(buf)) > limit {
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
		size   int64 = 32 << 10
	)
	for {
		// One byte past the limit is enough to tell that the body is too large.
		chunk := make([]byte, min(size, limit-total+1))
		n, err := io.ReadFull(r, chunk)
		total += int64(n)
		if total > limit {
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

// grow returns a full buf with room for more: twice its capacity, but no more
// than the hint (plus the byte for the end) while the hint is ahead, and never
// more than one byte past limit. readAll has returned before len(buf) > limit, so
// the new capacity is always larger.
func grow(buf []byte, hint, limit int64) []byte {
	n := 2 * int64(cap(buf))
	if int64(len(buf)) < hint {
		n = min(n, hint+1)
	}
	n = min(n, limit+1)
	out := make([]byte, len(buf), n)
	copy(out, buf)
	return out
}
