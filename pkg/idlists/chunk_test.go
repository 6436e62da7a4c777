package idlists

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/statsig-populator/statsig-populator/pkg/fetcher"
)

// The go-sdk worked example: 20 bytes held, the manifest grows to 30, the
// request is Range: bytes=20- and the chunk is exactly "-ungWv48B\n".
func TestChunkAppendFixture(t *testing.T) {
	file := fixture(t, "list_1_updated.txt")
	lists := newRecorder(t, serveFile(file))
	c := newTestClient("https://api.statsigcdn.example", Options{})

	first, ch, err := readChunk(c, lists.URL+"/list_1", 20, 0)
	if err != nil || !bytes.Equal(first, fixture(t, "list_1.txt")) || ch.Status != 206 || ch.Length != 20 {
		t.Fatalf("first load = %q, %+v, %v", first, ch, err)
	}
	got, ch, err := readChunk(c, lists.URL+"/list_1", 30, 20)
	if err != nil || string(got) != "-ungWv48B\n" || ch.Status != 206 || ch.Offset != 20 || ch.Length != 10 || ch.Skipped != 0 {
		t.Fatalf("append = %q, %+v, %v", got, ch, err)
	}
	reqs := lists.requests()
	if len(reqs) != 2 {
		t.Fatalf("%d requests", len(reqs))
	}
	for i, want := range []string{"bytes=0-", "bytes=20-"} {
		h := reqs[i].Header
		if h.Get("Range") != want || h.Get("Accept-Encoding") != "identity" || h.Get("User-Agent") != "statsig-populator/test" {
			t.Errorf("request %d headers %v", i, h)
		}
	}
	lists.mustNotSeeKey(t, testKey)
}

// The core fixture (27 lines) as a first load, then a chunk of the middle.
func TestChunkCoreFixture(t *testing.T) {
	file := fixture(t, "company_id_list")
	lists := newRecorder(t, serveFile(file))
	c := newTestClient(lists.URL, Options{})
	got, _, err := readChunk(c, lists.URL+"/company_id_list", 270, 0)
	if err != nil || !bytes.Equal(got, file) {
		t.Fatalf("got %d bytes, %v", len(got), err)
	}
	// The manifest says 100 bytes; the file has 270 (it grew since): the
	// chunk stops at the manifest's size.
	got, ch, err := readChunk(c, lists.URL+"/company_id_list", 100, 50)
	if err != nil || !bytes.Equal(got, file[50:100]) || ch.Length != 50 {
		t.Fatalf("got %q, %v", got, err)
	}
}

// A server that ignores Range and answers 200 with the whole file: the
// first offset bytes are skipped.
func TestChunkWholeFileAnswer(t *testing.T) {
	file := fixture(t, "list_1_updated.txt")
	whole := func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", itoa(int64(len(file))))
		w.Write(file)
	}
	lists := newRecorder(t, whole)
	c := newTestClient(lists.URL, Options{})
	got, ch, err := readChunk(c, lists.URL+"/l", 30, 20)
	if err != nil || string(got) != "-ungWv48B\n" || ch.Status != 200 || ch.Skipped != 20 {
		t.Fatalf("got %q, %+v, %v", got, ch, err)
	}
	if got, ch, err := readChunk(c, lists.URL+"/l", 30, 0); err != nil || !bytes.Equal(got, file) || ch.Skipped != 0 {
		t.Fatalf("offset 0: %q, %v", got, err)
	}
	// Without a Content-Length, too.
	lists2 := newRecorder(t, chunked(file))
	if got, ch, err := readChunk(c, lists2.URL+"/l", 30, 10); err != nil || string(got) != "+Ngi8oeRO\n-ungWv48B\n" || ch.Skipped != 10 {
		t.Fatalf("chunked 200: %q, %v", got, err)
	}
}

func TestChunkRefused(t *testing.T) {
	file := []byte("+ungWv48B\n+Ngi8oeRO\n-ungWv48B\n") // 30 bytes
	cr := func(s string) http.Header { return http.Header{"Content-Range": {s}} }
	cases := []struct {
		name           string
		h              http.HandlerFunc
		size, offset   int64
		reason         string // a *ChunkError reason, or
		label          string // a *FetchError label
		status         int
		deliveredAtErr int // bytes Read handed out before the error, -1 = any
	}{
		{name: "bad first byte", h: serveFile([]byte("xungWv48B\n")), size: 10, reason: "bad_first_byte"},
		{name: "misaligned offset", h: serveFile(file), size: 30, offset: 5, reason: "bad_first_byte"},
		{name: "html error page as 200", h: body(200, nil, []byte("<html>maintenance</html>\n")), size: 25, reason: "bad_first_byte"},
		{name: "no trailing newline", h: serveFile([]byte("+ungWv48B\n+Ngi8oeRO")), size: 19, reason: "no_trailing_newline", deliveredAtErr: -1},
		{name: "manifest cuts a line", h: serveFile(file), size: 25, offset: 20, reason: "no_trailing_newline", deliveredAtErr: 4},
		{name: "short: file smaller than manifest", h: serveFile(file), size: 40, offset: 20, reason: "short"},
		{name: "short: 206 range too small", h: body(206, cr("bytes 20-29/30"), file[20:]), size: 40, offset: 20, reason: "short"},
		{name: "short: 200 smaller than offset", h: body(200, nil, file), size: 50, offset: 40, reason: "short"},
		{name: "short: 200 without length, smaller than offset", h: chunked(file), size: 50, offset: 40, reason: "short"},
		{name: "short: 200 without length, ends early", h: chunked(file), size: 50, offset: 20, reason: "short", deliveredAtErr: 10},
		{name: "short: body shorter than Content-Length", h: lying(200, 30, file[:12]), size: 30, offset: 0, reason: "short", deliveredAtErr: -1},
		{name: "206 content-range elsewhere", h: body(206, cr("bytes 0-29/30"), file), size: 30, offset: 20, reason: "bad_content_range"},
		{name: "206 without content-range", h: body(206, nil, file[20:]), size: 30, offset: 20, reason: "bad_content_range"},
		{name: "206 garbage content-range", h: body(206, cr("bytes=20-29"), file[20:]), size: 30, offset: 20, reason: "bad_content_range"},
		{name: "206 content-range in items", h: body(206, cr("items 20-29/30"), file[20:]), size: 30, offset: 20, reason: "bad_content_range"},
		{name: "206 content-range backwards", h: body(206, cr("bytes 29-20/30"), file[20:]), size: 30, offset: 20, reason: "bad_content_range"},
		{name: "206 content-range total too small", h: body(206, cr("bytes 20-29/25"), file[20:]), size: 30, offset: 20, reason: "bad_content_range"},
		{name: "206 content-range huge", h: body(206, cr("bytes 20-99999999999999999999/*"), file[20:]), size: 30, offset: 20, reason: "bad_content_range"},
		{name: "206 content-range negative", h: body(206, cr("bytes -20-29/30"), file[20:]), size: 30, offset: 20, reason: "bad_content_range"},
		{name: "206 length disagrees with range", h: body(206, cr("bytes 20-39/40"), file[20:]), size: 30, offset: 20, reason: "bad_content_range"},
		{name: "200 misaligned", h: body(200, nil, []byte("+ungWv48B+\nNgi8oeRO\n")), size: 20, offset: 10, reason: "misaligned"},
		{name: "gzip", h: body(206, http.Header{"Content-Encoding": {"gzip"}, "Content-Range": {"bytes 0-29/30"}}, file), size: 30, reason: "compressed"},
		{name: "br on 200", h: body(200, http.Header{"Content-Encoding": {"br"}}, file), size: 30, reason: "compressed"},
		{name: "416", h: body(416, http.Header{"Content-Range": {"bytes */10"}}, nil), size: 30, offset: 20, reason: "range_not_satisfiable"},

		{name: "401", h: body(401, nil, nil), size: 30, label: "http_4xx", status: 401},
		{name: "403 expired signature", h: body(403, nil, []byte("<Error>AuthenticationFailed</Error>")), size: 30, label: "http_4xx", status: 403},
		{name: "404", h: body(404, nil, nil), size: 30, label: "http_4xx", status: 404},
		{name: "429", h: body(429, nil, nil), size: 30, label: "http_429", status: 429},
		{name: "408", h: body(408, nil, nil), size: 30, label: "http_408", status: 408},
		{name: "503", h: body(503, nil, nil), size: 30, label: "http_5xx", status: 503},
		{name: "302 not followed", h: body(302, http.Header{"Location": {"/elsewhere"}}, nil), size: 30, label: "http_3xx", status: 302},
		{name: "204", h: body(204, nil, nil), size: 30, label: "http_other", status: 204},
		{name: "hang", h: func(w http.ResponseWriter, r *http.Request) { <-r.Context().Done() }, size: 30, label: "timeout"},
		{name: "hang in body", h: func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Length", "30")
			w.Write(file[:10])
			w.(http.Flusher).Flush()
			<-r.Context().Done()
		}, size: 30, label: "timeout", deliveredAtErr: 10},
		{name: "offset at size", h: serveFile(file), size: 30, offset: 30, label: "refused"},
		{name: "offset negative", h: serveFile(file), size: 30, offset: -1, label: "refused"},
		{name: "size past the cap", h: serveFile(file), size: 1 << 20, label: "refused"},
	}
	seenReasons, seenLabels := map[string]bool{}, map[string]bool{"ok": true}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			lists := newRecorder(t, c.h)
			cl := newTestClient(lists.URL, Options{Timeout: 500 * time.Millisecond, MaxListBytes: 1000})
			ch, err := cl.OpenChunk(ctxBG, testKey, Entry{Name: "l", URL: lists.URL + "/l", Size: c.size, FileID: "F"}, c.offset)
			delivered := 0
			if err == nil {
				var p [4]byte // small reads: the checks must hold across Read calls
				for {
					var n int
					n, err = ch.Read(p[:])
					delivered += n
					if err != nil {
						break
					}
				}
				if n, err2 := ch.Read(p[:]); n != 0 || err2 != err {
					t.Errorf("Read after the end = %d, %v; want the same error again", n, err2)
				}
				ch.Close()
				if err == io.EOF {
					t.Fatalf("chunk accepted (%d bytes)", delivered)
				}
			}
			seenLabels[ChunkLabel(err)] = true
			if c.reason != "" {
				ce, ok := errorsAs[*ChunkError](err)
				if !ok || ce.Reason != c.reason || !IsBadChunk(err) || ChunkLabel(err) != "bad_chunk" {
					t.Fatalf("err = %T %v, want bad chunk %s", err, err, c.reason)
				}
				seenReasons[ce.Reason] = true
				if c.deliveredAtErr >= 0 && delivered != c.deliveredAtErr {
					t.Errorf("%d bytes handed out before the error, want %d", delivered, c.deliveredAtErr)
				}
			} else {
				fe, ok := errorsAs[*FetchError](err)
				if !ok || fe.Label != c.label || fe.Status != c.status || IsBadChunk(err) || ChunkLabel(err) != c.label {
					t.Fatalf("err = %T %v, want FetchError %s %d", err, err, c.label, c.status)
				}
				if c.deliveredAtErr > 0 && delivered != c.deliveredAtErr {
					t.Errorf("%d bytes handed out before the error, want %d", delivered, c.deliveredAtErr)
				}
				if c.label == "refused" && len(lists.requests()) != 0 {
					t.Error("a refused chunk was requested")
				}
			}
			if strings.Contains(err.Error(), testKey.Reveal()) {
				t.Errorf("error carries the key: %v", err)
			}
			if n := len(lists.requests()); n > 1 {
				t.Errorf("%d requests", n)
			}
			lists.mustNotSeeKey(t, testKey)
		})
	}
	for _, r := range ChunkReasons {
		if !seenReasons[r] {
			t.Errorf("reason %s never produced", r)
		}
	}
	seenLabels["network"], seenLabels["canceled"] = true, true // TestChunkTransport
	for _, l := range ChunkLabels {
		if !seenLabels[l] {
			t.Errorf("label %s never produced", l)
		}
	}
}

func TestChunkTransport(t *testing.T) {
	c := newTestClient("https://api.example", Options{Timeout: 2 * time.Second})
	// Nothing listens there any more.
	lists := newRecorder(t, serveFile([]byte("+a\n")))
	url := lists.URL + "/l"
	lists.Close()
	if _, _, err := readChunk(c, url, 3, 0); ChunkLabel(err) != "network" || IsBadChunk(err) {
		t.Errorf("closed server: %v (%s)", err, ChunkLabel(err))
	}
	// Canceled by the caller while waiting for headers.
	hang := newRecorder(t, func(w http.ResponseWriter, r *http.Request) { <-r.Context().Done() })
	ctx, cancel := context.WithCancel(ctxBG)
	time.AfterFunc(50*time.Millisecond, cancel)
	_, err := c.OpenChunk(ctx, testKey, Entry{Name: "l", URL: hang.URL + "/l", Size: 3, FileID: "F"}, 0)
	if ChunkLabel(err) != "canceled" {
		t.Errorf("canceled: %v (%s)", err, ChunkLabel(err))
	}
	// Canceled mid-body.
	slow := newRecorder(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", "30")
		w.Write([]byte("+ungWv48B\n"))
		w.(http.Flusher).Flush()
		<-r.Context().Done()
	})
	ctx, cancel = context.WithCancel(ctxBG)
	ch, err := c.OpenChunk(ctx, testKey, Entry{Name: "l", URL: slow.URL + "/l", Size: 30, FileID: "F"}, 0)
	if err != nil {
		t.Fatal(err)
	}
	time.AfterFunc(50*time.Millisecond, cancel)
	_, err = io.Copy(io.Discard, ch)
	ch.Close()
	ch.Close() // twice is harmless
	if ChunkLabel(err) != "canceled" || IsBadChunk(err) {
		t.Errorf("canceled mid-body: %v (%s)", err, ChunkLabel(err))
	}
	if ChunkLabel(nil) != "ok" || ChunkLabel(io.EOF) != "ok" || ChunkLabel(io.ErrClosedPipe) != "network" {
		t.Error("ChunkLabel")
	}
}

// The whole flow with the API and the list files on two different hosts:
// the list host never sees the key, in any form, and a list URL that would
// carry the key there is refused both by FetchManifest and by OpenChunk.
func TestKeyNeverReachesListHost(t *testing.T) {
	file := fixture(t, "company_id_list")
	lists := newRecorder(t, serveFile(file))
	// "localhost" and 127.0.0.1 are different hosts to the client, and the
	// ports differ as well.
	listBase := strings.Replace(lists.URL, "127.0.0.1", "localhost", 1)
	var manifest []byte
	api := newRecorder(t, func(w http.ResponseWriter, r *http.Request) { w.Write(manifest) })
	k := testKey.Reveal()
	manifest = []byte(`{
		"plain": {"name":"plain","size":270,"url":"` + listBase + `/v1/download_id_list_file/plain","creationTime":1,"fileID":"A"},
		"signed": {"name":"signed","size":270,"url":"` + listBase + `/v1/download_id_list_file/A%2Fx?sv=1&sig=abc&k=` + k + `","creationTime":1,"fileID":"B"},
		"on_api": {"name":"on_api","size":270,"url":"` + api.URL + `/v1/download_id_list_file/C?k=` + k + `","creationTime":1,"fileID":"C"}
	}`)
	c := newTestClient(api.URL, Options{})
	r := c.FetchManifest(ctxBG, testKey)
	if r.Outcome != fetcher.Updated {
		t.Fatal(r)
	}
	if got := r.Manifest.Names(); !slices.Equal(got, []string{"on_api", "plain"}) {
		t.Fatalf("entries %v, refused %+v", got, r.Manifest.Refused)
	}
	if len(r.Manifest.Refused) != 1 || r.Manifest.Refused[0].Name != "signed" || r.Manifest.Refused[0].Reason != "key_in_url" {
		t.Fatalf("refused %+v", r.Manifest.Refused)
	}
	ch, err := c.OpenChunk(ctxBG, testKey, r.Manifest.Entries["plain"], 0)
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(ch)
	ch.Close()
	if err != nil || !bytes.Equal(got, file) {
		t.Fatalf("plain: %d bytes, %v", len(got), err)
	}
	// OpenChunk refuses the leaking entry on its own, even if a caller
	// bypassed the manifest screening, and sends nothing.
	signed := Entry{Name: "signed", Size: 270, URL: listBase + "/v1/download_id_list_file/A%2Fx?sv=1&sig=abc&k=" + k, FileID: "B", CreationTime: 1}
	before := len(lists.requests())
	if _, err := c.OpenChunk(ctxBG, testKey, signed, 0); ChunkLabel(err) != "refused" || strings.Contains(err.Error(), k) {
		t.Errorf("leaking entry: %v", err)
	}
	for _, u := range []string{
		listBase + "/" + k + "/file",
		listBase + "/x?k=%73" + k[1:],                                       // percent-encoded
		strings.Replace(api.URL, "http://", "https://", 1) + "/x?k=" + k,    // same host, another scheme
		strings.Replace(api.URL, "127.0.0.1", "localhost", 1) + "/x?k=" + k, // another name for the same machine
	} {
		if _, err := c.OpenChunk(ctxBG, testKey, Entry{Name: "x", Size: 270, URL: u, FileID: "B"}, 0); ChunkLabel(err) != "refused" {
			t.Errorf("%s: %v", strings.ReplaceAll(u, k, "KEY"), err)
		}
	}
	if len(lists.requests()) != before {
		t.Error("a refused entry was requested")
	}
	lists.mustNotSeeKey(t, testKey)

	// The API's own origin may carry the key (a signed URL on the same host).
	ch, err = c.OpenChunk(ctxBG, testKey, r.Manifest.Entries["on_api"], 0)
	if err != nil {
		t.Fatal(err)
	}
	ch.Close()
	if reqs := api.requests(); len(reqs) != 2 || !strings.HasPrefix(reqs[1].URI, "/v1/download_id_list_file/C?k=") {
		t.Errorf("api requests %+v", reqs)
	}
}

// A list host that redirects is not followed: the client never reaches the
// redirect's target.
func TestChunkRedirectNotFollowed(t *testing.T) {
	target := newRecorder(t, serveFile([]byte("+a\n")))
	redir := newRecorder(t, func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, target.URL+"/l", http.StatusFound)
	})
	c := newTestClient(redir.URL, Options{})
	if _, _, err := readChunk(c, redir.URL+"/l", 3, 0); ChunkLabel(err) != "http_3xx" {
		t.Errorf("err %v", err)
	}
	if len(target.requests()) != 0 {
		t.Error("redirect followed")
	}
}
