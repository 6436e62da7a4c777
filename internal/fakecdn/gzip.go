package fakecdn

import (
	"bytes"
	"compress/gzip"
	"compress/zlib"
	"encoding/binary"
	"hash/crc32"
	"strconv"
)

// GzipBomb is a valid gzip stream of a JSON object whose one string member
// holds mib MiB of spaces: {"has_updates":true,"time":<lcut>,"filler":"   …"}.
// It compresses about a thousand to one (256 MiB → about 260 KB).
//
// Compressing hundreds of MiB takes seconds, minutes in a race-enabled test
// binary, so the stream is spliced instead: one MiB of spaces is compressed
// once, between two sync flushes, in a window that holds nothing but
// spaces, and those bytes repeated. Each repetition is whole deflate blocks
// that start and end on a byte boundary and refer back only to spaces, so
// the splice decodes to the full text; the trailer's CRC-32 and size are
// computed over that text.
func GzipBomb(lcut int64, mib int) []byte {
	prefix := []byte(`{"has_updates":true,"time":` + strconv.FormatInt(lcut, 10) + `,"filler":"`)
	suffix := []byte(`"}`)
	lead := bytes.Repeat([]byte(" "), 64<<10) // fills the 32 KiB window with spaces
	oneMiB := bytes.Repeat([]byte(" "), 1<<20)

	var buf bytes.Buffer
	zw, _ := gzip.NewWriterLevel(&buf, gzip.BestCompression)
	_, _ = zw.Write(prefix)
	_, _ = zw.Write(lead)
	_ = zw.Flush()
	head := append([]byte(nil), buf.Bytes()...)
	buf.Reset()
	_, _ = zw.Write(oneMiB)
	_ = zw.Flush()
	seg := append([]byte(nil), buf.Bytes()...)
	buf.Reset()
	_, _ = zw.Write(suffix)
	_ = zw.Close()
	tail := buf.Bytes()[:buf.Len()-8] // the writer's trailer counts only what it saw

	crc := crc32.Update(0, crc32.IEEETable, prefix)
	crc = crc32.Update(crc, crc32.IEEETable, lead)
	for i := 0; i < mib; i++ {
		crc = crc32.Update(crc, crc32.IEEETable, oneMiB)
	}
	crc = crc32.Update(crc, crc32.IEEETable, suffix)
	size := uint32(len(prefix) + len(lead) + mib<<20 + len(suffix))

	out := make([]byte, 0, len(head)+mib*len(seg)+len(tail)+8)
	out = append(out, head...)
	for i := 0; i < mib; i++ {
		out = append(out, seg...)
	}
	out = append(out, tail...)
	out = binary.LittleEndian.AppendUint32(out, crc)
	return binary.LittleEndian.AppendUint32(out, size)
}

// GzipLyingSize is a gzip stream of body whose trailer claims isize bytes
// (the decoded size modulo 2^32) instead of len(body): a reader that
// believes the trailer reserves isize bytes before inflating anything.
func GzipLyingSize(body []byte, isize uint32) []byte {
	z := gzipBytes(body)
	binary.LittleEndian.PutUint32(z[len(z)-4:], isize)
	return z
}

// GzipCorrupt is a gzip stream of body with its deflate data damaged: the
// header is valid, the data does not decode (or fails its CRC).
func GzipCorrupt(body []byte) []byte {
	z := gzipBytes(body)
	for i := 12; i < len(z)-8 && i < 12+64; i++ {
		z[i] ^= 0xa5
	}
	return z
}

// ZlibBomb is a valid zlib stream (RFC 1950, what statsig-node-redis stores
// base64-encoded) of mib MiB of zeros, about 1000 times smaller than what it
// inflates to. It repeats the compressor's output for one MiB after a sync
// flush (identical once the window holds only zeros), so it costs one MiB of
// compression rather than mib.
func ZlibBomb(mib int) []byte {
	var z bytes.Buffer
	zw, _ := zlib.NewWriterLevel(&z, zlib.BestCompression)
	zeros := make([]byte, 1<<20)
	var marks []int
	for i := 0; i < 3; i++ {
		_, _ = zw.Write(zeros)
		_ = zw.Flush()
		marks = append(marks, z.Len())
	}
	out := z.Bytes()
	head, rep := out[:marks[0]], out[marks[0]:marks[1]]
	if !bytes.Equal(rep, out[marks[1]:marks[2]]) {
		panic("fakecdn: the compressor's output for a MiB of zeros does not repeat")
	}
	bomb := append([]byte(nil), head...)
	for i := 1; i < mib; i++ {
		bomb = append(bomb, rep...)
	}
	bomb = append(bomb, 0x03, 0x00) // a final, empty, fixed-Huffman block
	// Adler-32 of zeros: a = 1, b = the length (mod 65521).
	return binary.BigEndian.AppendUint32(bomb, uint32((uint64(mib)<<20)%65521)<<16|1)
}
