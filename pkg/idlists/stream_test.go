package idlists

import (
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"runtime"
	"sync/atomic"
	"testing"
	"time"
)

const lineLen = 10 // "+" + 8 id characters + "\n"

// lineFile is an ID-list file of n lines generated on the fly (no 10 MB
// buffer anywhere in the test either): line i is '+' (or '-' for every
// seventh) and 8 base64 characters of i.
type lineFile struct {
	n, pos int64
}

const b64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"

func lineByte(pos int64) byte {
	line, col := pos/lineLen, pos%lineLen
	switch col {
	case 0:
		if line%7 == 6 {
			return '-'
		}
		return '+'
	case lineLen - 1:
		return '\n'
	}
	return b64[(line>>(6*(col-1)))&63]
}

func (f *lineFile) Read(p []byte) (int, error) {
	size := f.n * lineLen
	if f.pos >= size {
		return 0, io.EOF
	}
	n := int(min(int64(len(p)), size-f.pos))
	for i := range n {
		p[i] = lineByte(f.pos + int64(i))
	}
	f.pos += int64(n)
	return n, nil
}

func (f *lineFile) Seek(off int64, whence int) (int64, error) {
	switch whence {
	case io.SeekStart:
	case io.SeekCurrent:
		off += f.pos
	case io.SeekEnd:
		off += f.n * lineLen
	}
	if off < 0 {
		return 0, errors.New("negative seek")
	}
	f.pos = off
	return off, nil
}

// lineServer serves a lineFile of n lines, honouring Range (206), and counts
// every byte it writes to the network, headers included.
func lineServer(t testing.TB, n int64) (*httptest.Server, *atomic.Int64) {
	t.Helper()
	var sent atomic.Int64
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain")
		http.ServeContent(w, r, "", time.Time{}, &lineFile{n: n})
	}))
	srv.Listener = countingListener{srv.Listener, &sent}
	srv.Start()
	t.Cleanup(srv.Close)
	return srv, &sent
}

type countingListener struct {
	net.Listener
	n *atomic.Int64
}

func (l countingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return countingConn{c, l.n}, nil
}

type countingConn struct {
	net.Conn
	n *atomic.Int64
}

func (c countingConn) Write(p []byte) (int, error) {
	n, err := c.Conn.Write(p)
	c.n.Add(int64(n))
	return n, err
}

// lineSink stands for the Redis writer: it takes the bytes a buffer at a
// time and checks that they are whole lines of the generated file, without
// keeping them.
type lineSink struct {
	at  int64 // file offset of the next byte
	bad int64
}

func (s *lineSink) Write(p []byte) (int, error) {
	for i, c := range p {
		if c != lineByte(s.at+int64(i)) {
			s.bad++
		}
	}
	s.at += int64(len(p))
	return len(p), nil
}

// stream copies entry's file from offset into sink through a fixed buffer,
// as the writer will (io.CopyBuffer into a writer without ReadFrom).
func stream(c *Client, e Entry, offset int64, sink *lineSink, buf []byte) (int64, error) {
	ch, err := c.OpenChunk(ctxBG, testKey, e, offset)
	if err != nil {
		return 0, err
	}
	defer ch.Close()
	sink.at = offset
	return io.CopyBuffer(struct{ io.Writer }{sink}, ch, buf)
}

// A first load of a 1,000,000-id list (10 MB) streams through the reader:
// what the client and the server together allocate stays far below the
// file's size, and the number of allocations does not grow with it.
func TestStreamFirstLoadMemory(t *testing.T) {
	const lines = 1_000_000
	srv, _ := lineServer(t, lines)
	c := newTestClient(srv.URL, Options{Timeout: time.Minute})
	big := Entry{Name: "big", URL: srv.URL + "/big", Size: lines * lineLen, FileID: "F"}
	small := Entry{Name: "small", URL: srv.URL + "/small", Size: 1000 * lineLen, FileID: "F"}
	buf := make([]byte, 32<<10)
	var sink lineSink
	if _, err := stream(c, small, 0, &sink, buf); err != nil { // warm the connection up
		t.Fatal(err)
	}

	runtime.GC()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	n, err := stream(c, big, 0, &sink, buf)
	runtime.ReadMemStats(&after)
	if err != nil || n != big.Size || sink.bad != 0 {
		t.Fatalf("streamed %d of %d bytes (%d wrong), %v", n, big.Size, sink.bad, err)
	}
	allocated := after.TotalAlloc - before.TotalAlloc
	t.Logf("10 MB first load: %d bytes allocated in %d allocations (client and server), peak heap in use %d", allocated, after.Mallocs-before.Mallocs, after.HeapInuse)
	if allocated > 1<<20 {
		t.Errorf("streaming a %d-byte list allocated %d bytes: it is being buffered", big.Size, allocated)
	}

	bigAllocs := testing.AllocsPerRun(2, func() {
		if _, err := stream(c, big, 0, &sink, buf); err != nil {
			t.Fatal(err)
		}
	})
	smallAllocs := testing.AllocsPerRun(2, func() {
		if _, err := stream(c, small, 0, &sink, buf); err != nil {
			t.Fatal(err)
		}
	})
	t.Logf("allocations per stream: %.0f for 10 MB, %.0f for 10 KB", bigAllocs, smallAllocs)
	if bigAllocs > smallAllocs+50 {
		t.Errorf("allocations grow with the list: %.0f for 10 MB, %.0f for 10 KB", bigAllocs, smallAllocs)
	}
}

// An append of 100 lines to a 1,000,000-line list downloads the 1,000 new
// bytes (plus headers): under 64 KiB on the wire.
func TestAppendDownloadsOnlyNewBytes(t *testing.T) {
	const stored, added = 1_000_000, 100
	srv, sent := lineServer(t, stored+added)
	c := newTestClient(srv.URL, Options{})
	e := Entry{Name: "big", URL: srv.URL + "/big", Size: (stored + added) * lineLen, FileID: "F"}
	var sink lineSink
	n, err := stream(c, e, stored*lineLen, &sink, make([]byte, 32<<10))
	if err != nil || n != added*lineLen || sink.bad != 0 {
		t.Fatalf("appended %d bytes (%d wrong), %v", n, sink.bad, err)
	}
	t.Logf("append of %d lines: %d bytes on the wire", added, sent.Load())
	if s := sent.Load(); s >= 64<<10 {
		t.Errorf("append of %d bytes sent %d bytes over the network", n, s)
	}
}

func BenchmarkStreamFirstLoad(b *testing.B) {
	const lines = 1_000_000
	srv, _ := lineServer(b, lines)
	c := newTestClient(srv.URL, Options{Timeout: time.Minute})
	e := Entry{Name: "big", URL: srv.URL + "/big", Size: lines * lineLen, FileID: "F"}
	buf := make([]byte, 32<<10)
	var sink lineSink
	b.SetBytes(e.Size)
	b.ReportAllocs()
	for b.Loop() {
		if n, err := stream(c, e, 0, &sink, buf); err != nil || n != e.Size {
			b.Fatal(n, err)
		}
	}
}
