package fetcher

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"net/http"
	"os"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"testing/iotest"
	"time"

	"github.com/statsig-populator/statsig-populator/pkg/keys"
)

func gz(parts ...string) []byte {
	var b bytes.Buffer
	for _, p := range parts { // several parts make a multi-member stream
		zw := gzip.NewWriter(&b)
		zw.Write([]byte(p))
		zw.Close()
	}
	return b.Bytes()
}

func TestReadBody(t *testing.T) {
	payload := strings.Repeat(`{"a":"b"}`, 50000)
	cases := []struct {
		name     string
		body     []byte
		encoding string
		size     int64
		max      int64
		want     string
		wantErr  error
	}{
		{"plain, known size", []byte(payload), "", int64(len(payload)), 1 << 20, payload, nil},
		{"plain, unknown size", []byte(payload), "", -1, 1 << 20, payload, nil},
		{"plain, too large", []byte(payload), "", -1, 1000, "", errTooLarge},
		{"gzip", gz(payload), "gzip", -1, 1 << 20, payload, nil},
		{"gzip, known compressed size", gz(payload), "gzip", int64(len(gz(payload))), 1 << 20, payload, nil},
		// The trailer holds only the last member's size: the hint is low.
		{"gzip, two members", gz(payload, "tail"), "gzip", -1, 1 << 20, payload + "tail", nil},
		{"gzip, decoded size above the limit (from the trailer)", gz(payload), "gzip", -1, 1000, "", errTooLarge},
		{"gzip bomb without a truthful trailer", gz(payload, ""), "gzip", -1, 1000, "", errTooLarge},
	}
	for _, c := range cases {
		got, err := readBody(iotest.HalfReader(bytes.NewReader(c.body)), c.encoding, c.max, c.size)
		if !errors.Is(err, c.wantErr) || string(got) != c.want {
			t.Errorf("%s: %d bytes, %v; want %d bytes, %v", c.name, len(got), err, len(c.want), c.wantErr)
		}
	}
	for name, broken := range corruptGzips(payload) {
		_, err := readBody(bytes.NewReader(broken), "gzip", 1<<20, -1)
		var ip *InvalidPayloadError
		if !errors.As(err, &ip) || ip.Reason != "bad_encoding" {
			t.Errorf("%s: %v, want bad_encoding", name, err)
		}
	}
}

// corruptGzips are gzip bodies that arrive whole but do not decode.
func corruptGzips(payload string) map[string][]byte {
	good := gz(payload)
	flip := func(i int) []byte {
		b := bytes.Clone(good)
		b[i] ^= 0xff
		return b
	}
	isize := bytes.Clone(good)
	binary.LittleEndian.PutUint32(isize[len(isize)-4:], uint32(len(payload)+1))
	return map[string][]byte{
		"empty":                   {},
		"one byte":                []byte("x"),
		"not gzip at all":         []byte("not gzip at all, long enough"),
		"bad magic":               flip(0),
		"bad method":              flip(2),
		"header only":             good[:10],
		"truncated deflate data":  good[:len(good)/2],
		"no trailer":              good[:len(good)-8],
		"bad CRC":                 flip(len(good) - 8),
		"bad ISIZE":               isize,
		"corrupt deflate data":    flip(12),
		"trailing garbage":        append(bytes.Clone(good), "garbage that is not a gzip member"...),
		"trailing partial header": append(bytes.Clone(good), 0x1f, 0x8b),
	}
}

// A gzip payload is read into one buffer of exactly its size, whether its
// trailer is believed at once (a ratio JSON reaches) or only after the stream
// was measured (a ratio only repetitive data reaches).
func TestReadBodyAllocatesOnce(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	var jsonLike bytes.Buffer
	for jsonLike.Len() < 2<<20 {
		fmt.Fprintf(&jsonLike, `{"name":"gate_%d","salt":"%016x","rules":[{"id":"%08x","passPercentage":%d,"conditions":[{"type":"user_field","field":"country","targetValue":["US","CA"]}]}]},`,
			rng.IntN(100000), rng.Uint64(), rng.Uint32(), rng.IntN(101))
	}
	for name, payload := range map[string][]byte{
		"JSON-like payload":  jsonLike.Bytes(),
		"repetitive payload": bytes.Repeat([]byte("x"), 8<<20),
	} {
		compressed := gz(string(payload))
		var (
			body []byte
			err  error
		)
		n := allocated(func() { body, err = readBody(bytes.NewReader(compressed), "gzip", 64<<20, int64(len(compressed))) })
		if err != nil || !bytes.Equal(body, payload) || cap(body) > len(payload)+1 {
			t.Fatalf("%s: %d bytes, cap %d, %v", name, len(body), cap(body), err)
		}
		// Any second buffer for the payload would cost at least half its size.
		if extra := int64(n) - int64(len(payload)) - int64(len(compressed)); extra > 256<<10 {
			t.Errorf("%s: allocated %d bytes beyond the payload and its compressed form", name, extra)
		}
	}
}

// allocated is how many bytes the heap handed out while f ran.
func allocated(f func()) uint64 {
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	f()
	runtime.ReadMemStats(&after)
	return after.TotalAlloc - before.TotalAlloc
}

// zerosBomb is 64 MiB of zeros, gzipped (about 1000:1). It is a file because
// compressing 64 MiB under the race detector takes seconds.
func zerosBomb(t *testing.T) []byte {
	t.Helper()
	b, err := os.ReadFile("testdata/zeros-64MiB.gz")
	if err != nil {
		t.Fatal(err)
	}
	if len(b) > 100<<10 || binary.LittleEndian.Uint32(b[len(b)-4:]) != 64<<20 || b[0] != 0x1f || b[1] != 0x8b {
		t.Fatalf("testdata/zeros-64MiB.gz is not 64 MiB gzipped into less than 100 KiB")
	}
	return b
}

// withISIZE is b with its gzip trailer's size field replaced.
func withISIZE(b []byte, n uint32) []byte {
	b = bytes.Clone(b)
	binary.LittleEndian.PutUint32(b[len(b)-4:], n)
	return b
}

// Sizes a server announces (Content-Length, the gzip trailer) are not
// allocated before the bytes arrive; MAX_PAYLOAD_BYTES bounds what is
// decompressed; a stream that arrived whole but does not decode is a bad
// encoding, not a network failure.
func TestHostileBodiesOverHTTP(t *testing.T) {
	const budget = 4 << 20 // bytes a fetch may allocate, far below the sizes claimed
	small := gz("{}")
	cases := []struct {
		name    string
		max     int64
		times   int // fetches in a row
		serve   func(w http.ResponseWriter)
		class   string
		outcome Outcome
	}{
		{name: "trailer claims 4 GiB-1, inflates to 2 bytes", max: 256 << 20, serve: gzipped(withISIZE(small, math.MaxUint32)),
			outcome: Rejected, class: "invalid_payload:bad_encoding"},
		{name: "trailer claims 64 MiB, inflates to 2 bytes", max: 256 << 20, serve: gzipped(withISIZE(small, 64<<20)),
			outcome: Rejected, class: "invalid_payload:bad_encoding"},
		{name: "eight tiny answers claiming 64 MiB", max: 256 << 20, times: 8, serve: gzipped(withISIZE(small, 64<<20)),
			outcome: Rejected, class: "invalid_payload:bad_encoding"},
		{name: "trailer claims the limit, inflates to 2 bytes", max: 8 << 20, serve: gzipped(withISIZE(small, 8<<20)),
			outcome: Rejected, class: "invalid_payload:bad_encoding"},
		{name: "1000:1 bomb past the limit", max: 1 << 20, serve: gzipped(zerosBomb(t)),
			outcome: Rejected, class: "too_large"},
		{name: "1000:1 bomb, trailer claims 2 bytes", max: 1 << 20, serve: gzipped(withISIZE(zerosBomb(t), 2)),
			outcome: Rejected, class: "too_large"},
		{name: "1000:1 bomb, trailer claims 0", max: 1 << 20, serve: gzipped(withISIZE(zerosBomb(t), 0)),
			outcome: Rejected, class: "too_large"},
		{name: "plain, announces 64 MiB, sends 10 bytes", max: 256 << 20, serve: shortBody("", 64<<20, []byte(`{"time":1,`)),
			outcome: Transient, class: "network"},
		{name: "gzip, announces 64 MiB, sends 10 bytes", max: 256 << 20, serve: shortBody("gzip", 64<<20, small[:10]),
			outcome: Transient, class: "network"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			cl := serve(t, Options{MaxPayloadBytes: c.max}, func(w http.ResponseWriter, r *http.Request) { c.serve(w) })
			var results []Result
			n := allocated(func() {
				for range max(c.times, 1) {
					results = append(results, cl.Fetch(context.Background(), testKey, keys.V1, 0))
				}
			})
			for _, r := range results {
				if r.Outcome != c.outcome || r.Class != c.class {
					t.Fatalf("got %s/%s (%v), want %s/%s", r.Outcome, r.Class, r.Err, c.outcome, c.class)
				}
			}
			if n > budget {
				t.Fatalf("allocated %d bytes, want at most %d", n, budget)
			}
		})
	}
}

func TestCorruptGzipOverHTTP(t *testing.T) {
	payload := v1Body(1000)
	for name, body := range corruptGzips(payload) {
		t.Run(name, func(t *testing.T) {
			cl := serve(t, Options{}, func(w http.ResponseWriter, r *http.Request) { gzipped(body)(w) })
			r := cl.Fetch(context.Background(), testKey, keys.V1, 0)
			var ip *InvalidPayloadError
			if r.Outcome != Rejected || r.Class != "invalid_payload:bad_encoding" || r.Label != "invalid_payload" ||
				!errors.As(r.Err, &ip) || ip.Reason != "bad_encoding" {
				t.Fatalf("got %s/%s label %s (%v), want rejected/invalid_payload:bad_encoding", r.Outcome, r.Class, r.Label, r.Err)
			}
		})
	}
	// The same stream whole is fine: the cases above fail for their damage.
	cl := serve(t, Options{}, func(w http.ResponseWriter, r *http.Request) { gzipped(gz(payload))(w) })
	if r := cl.Fetch(context.Background(), testKey, keys.V1, 0); r.Outcome != Updated || string(r.Body) != payload {
		t.Fatalf("intact gzip: %s/%s (%v)", r.Outcome, r.Class, r.Err)
	}
}

// A gzip body that the network cuts short is a network failure or a timeout,
// as before: the stream itself was never seen whole.
func TestGzipCutByTheNetwork(t *testing.T) {
	body := gz(strings.Repeat(v1Body(1000), 100))
	cl := serve(t, Options{}, func(w http.ResponseWriter, r *http.Request) {
		shortBody("gzip", len(body), body[:len(body)/2])(w)
	})
	if r := cl.Fetch(context.Background(), testKey, keys.V1, 0); r.Outcome != Transient || r.Class != "network" {
		t.Fatalf("cut: %s/%s (%v), want transient/network", r.Outcome, r.Class, r.Err)
	}

	stall := serve(t, Options{Timeout: 300 * time.Millisecond}, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Encoding", "gzip")
		w.Header().Set("Content-Length", strconv.Itoa(len(body)))
		_, _ = w.Write(body[:len(body)/2])
		w.(http.Flusher).Flush()
		<-r.Context().Done()
	})
	if r := stall.Fetch(context.Background(), testKey, keys.V1, 0); r.Outcome != Transient || r.Class != "timeout" {
		t.Fatalf("stalled: %s/%s (%v), want transient/timeout", r.Outcome, r.Class, r.Err)
	}
}

// gzipped answers body as a gzip payload of its exact length.
func gzipped(body []byte) func(w http.ResponseWriter) {
	return func(w http.ResponseWriter) {
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Content-Encoding", "gzip")
		w.Header().Set("Content-Length", strconv.Itoa(len(body)))
		_, _ = w.Write(body)
	}
}

// shortBody announces size bytes, sends part, and drops the connection.
func shortBody(encoding string, size int, part []byte) func(w http.ResponseWriter) {
	return func(w http.ResponseWriter) {
		if encoding != "" {
			w.Header().Set("Content-Encoding", encoding)
		}
		w.Header().Set("Content-Length", strconv.Itoa(size))
		_, _ = w.Write(part)
		w.(http.Flusher).Flush()
		panic(http.ErrAbortHandler)
	}
}

// readAll reserves no more than it is told to trust, whatever the hint, and
// ends with a buffer of the final size when the hint was right.
func TestReadAllReservation(t *testing.T) {
	cases := []struct {
		name    string
		data    string
		hint    int64
		reserve int64
		limit   int64
		maxCap  int
		wantErr error
	}{
		{"hint true and trusted", "0123456789", 10, 10, 1 << 30, 11, nil},
		{"hint true, larger than the reserve", strings.Repeat("x", 100), 100, 8, 1 << 30, 101, nil},
		{"hint of a gigabyte, ten bytes", "0123456789", 1 << 30, 1 << 20, 1 << 30, 1<<20 + 1, nil},
		{"hint above the limit", "0123456789", 1 << 40, 1 << 40, 64, 65, nil},
		{"hint low", strings.Repeat("x", 100), 10, 10, 1 << 30, 200, nil},
		{"hint zero", strings.Repeat("x", 100), 0, 0, 1 << 30, 200, nil},
		{"past the limit", strings.Repeat("x", 100), 10, 10, 99, 0, errTooLarge},
		{"exactly the limit", strings.Repeat("x", 100), 10, 10, 100, 101, nil},
		{"no hint", strings.Repeat("x", 100), -1, 0, 1 << 30, 32 << 10, nil}, // the first chunk
		{"no hint, past the limit", strings.Repeat("x", 100), -1, 0, 99, 0, errTooLarge},
	}
	for _, c := range cases {
		got, err := readAll(iotest.HalfReader(strings.NewReader(c.data)), c.limit, c.hint, c.reserve)
		if err != c.wantErr {
			t.Errorf("%s: error %v, want %v", c.name, err, c.wantErr)
			continue
		}
		if err == nil && (string(got) != c.data || cap(got) > c.maxCap) {
			t.Errorf("%s: %d bytes in a buffer of %d, want %d bytes in at most %d", c.name, len(got), cap(got), len(c.data), c.maxCap)
		}
	}
}

// gunzip agrees with compress/gzip on every stream within the limit, and
// fails only with errTooLarge or bad_encoding.
func FuzzGunzip(f *testing.F) {
	for _, s := range [][]byte{gz("{}"), gz("a", "b"), gz(strings.Repeat("x", 5000)), withISIZE(gz("{}"), math.MaxUint32), gz("{}")[:12], []byte("x")} {
		f.Add(s)
	}
	const limit = 4 << 10
	f.Fuzz(func(t *testing.T, b []byte) {
		got, err := gunzip(b, limit)
		var want []byte
		zr, werr := gzip.NewReader(bytes.NewReader(b))
		if werr == nil {
			want, werr = io.ReadAll(io.LimitReader(zr, limit+1))
		}
		var ip *InvalidPayloadError
		switch {
		case err == nil:
			if werr != nil || !bytes.Equal(got, want) {
				t.Fatalf("accepted %q as %q; compress/gzip: %q, %v", b, got, want, werr)
			}
		case err == errTooLarge:
			if len(want) <= limit {
				t.Fatalf("too large, but compress/gzip reads %d bytes (%v)", len(want), werr)
			}
		case errors.As(err, &ip) && ip.Reason == "bad_encoding":
			if werr == nil && len(want) <= limit {
				t.Fatalf("bad encoding (%v), but compress/gzip reads it", err)
			}
		default:
			t.Fatalf("unexpected error %v", err)
		}
	})
}
