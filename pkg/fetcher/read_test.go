package fetcher

import (
	"bytes"
	"compress/gzip"
	"errors"
	"strings"
	"testing"
	"testing/iotest"
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
	for _, broken := range [][]byte{[]byte("not gzip at all, long enough"), gz(payload)[:100], []byte("x")} {
		if _, err := readBody(bytes.NewReader(broken), "gzip", 1<<20, -1); err == nil {
			t.Errorf("broken gzip %q… accepted", broken[:min(10, len(broken))])
		}
	}
}

// A payload whose size is known is read into one buffer of exactly that size.
func TestReadBodyAllocatesOnce(t *testing.T) {
	payload := bytes.Repeat([]byte("x"), 8<<20)
	compressed := gz(string(payload))
	allocs := testing.AllocsPerRun(3, func() {
		body, err := readBody(bytes.NewReader(compressed), "gzip", 64<<20, int64(len(compressed)))
		if err != nil || len(body) != len(payload) || cap(body) > len(payload)+1 {
			t.Fatalf("%d bytes, cap %d, %v", len(body), cap(body), err)
		}
	})
	if allocs > 20 {
		t.Errorf("%v allocations to read a gzip body of known size", allocs)
	}
}
