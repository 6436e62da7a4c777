package fakecdn

import (
	"bytes"
	"compress/gzip"
	"encoding/binary"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"testing"
	"time"

	"github.com/statsig-populator/statsig-populator/pkg/keys"
)

var testKey = keys.MustParse("secret-knobs-test-key-0001")

func serve(t *testing.T, s *Server, path string, gz bool) *http.Response {
	t.Helper()
	req := httptest.NewRequest(http.MethodGet, path, nil)
	if gz {
		req.Header.Set("Accept-Encoding", "gzip")
	}
	rec := httptest.NewRecorder()
	s.ServeHTTP(rec, req)
	return rec.Result()
}

func TestHeaderKnob(t *testing.T) {
	s := New()
	s.SetProject(testKey, Project{Lcut: 1000, Value: 1})
	s.SetFault(testKey, Fault{Header: map[string]string{"X-Cache-Hit": "true", "X-Since-Time": "99", "Content-Type": ""}})
	resp := serve(t, s, "/v1/download_config_specs/"+testKey.Reveal()+".json", false)
	if resp.StatusCode != 200 || resp.Header.Get("X-Cache-Hit") != "true" || resp.Header.Get("X-Since-Time") != "99" {
		t.Fatalf("status %d, headers %v", resp.StatusCode, resp.Header)
	}
	if resp.Header.Get("Content-Type") != "" {
		t.Errorf("an empty value should remove the header: %v", resp.Header)
	}
	body, _ := io.ReadAll(resp.Body)
	if !bytes.Equal(body, V1Body(testKey, Project{Lcut: 1000, Value: 1})) {
		t.Errorf("the body changed: %s", body)
	}
}

func TestBodyKnob(t *testing.T) {
	s := New()
	s.SetProject(testKey, Project{Lcut: 1000, Value: 1})
	s.SetFault(testKey, Fault{Status: 403, Body: []byte("<html>Forbidden</html>"), ContentType: "text/html"})
	resp := serve(t, s, "/v2/download_config_specs/"+testKey.Reveal()+".json?sinceTime=5000", true)
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 403 || resp.Header.Get("Content-Type") != "text/html" || string(body) != "<html>Forbidden</html>" ||
		resp.Header.Get("Content-Encoding") != "" {
		t.Fatalf("%d %v %q", resp.StatusCode, resp.Header, body)
	}
	s.SetFault(testKey, Fault{Body: []byte{1, 2, 3}, ContentEncoding: "gzip"})
	resp = serve(t, s, "/v2/download_config_specs/"+testKey.Reveal()+".json", true)
	body, _ = io.ReadAll(resp.Body)
	if resp.StatusCode != 200 || resp.Header.Get("Content-Encoding") != "gzip" || !bytes.Equal(body, []byte{1, 2, 3}) {
		t.Fatalf("%d %v %q", resp.StatusCode, resp.Header, body)
	}
	if s.Count("fault") != 2 {
		t.Errorf("fault count %d", s.Count("fault"))
	}
}

func TestFutureTimeKnob(t *testing.T) {
	s := New()
	s.SetProject(testKey, Project{Lcut: 1000, Value: 1})
	s.SetFault(testKey, Fault{FutureTime: true})
	// Served in full even to a sinceTime at the real lcut.
	resp := serve(t, s, "/v2/download_config_specs/"+testKey.Reveal()+".json?sinceTime=1000", false)
	var body struct {
		HasUpdates bool  `json:"has_updates"`
		Time       int64 `json:"time"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		t.Fatal(err)
	}
	ahead := time.Until(time.UnixMilli(body.Time))
	if !body.HasUpdates || ahead < FutureOffset-time.Minute || ahead > FutureOffset {
		t.Fatalf("has_updates %v, time %v ahead", body.HasUpdates, ahead)
	}
	if resp.Header.Get("X-Since-Time") != strconv.FormatInt(body.Time, 10) {
		t.Errorf("x-since-time %q, body time %d", resp.Header.Get("X-Since-Time"), body.Time)
	}
}

func TestGzipBuilders(t *testing.T) {
	bomb := GzipBomb(1700000000000, 4)
	zr, err := gzip.NewReader(bytes.NewReader(bomb))
	if err != nil {
		t.Fatal(err)
	}
	all, err := io.ReadAll(zr)
	if err != nil {
		t.Fatalf("the spliced bomb does not decode: %v", err)
	}
	if len(all) < 4<<20 || !bytes.HasPrefix(all, []byte(`{"has_updates":true,"time":1700000000000,"filler":"   `)) ||
		!bytes.HasSuffix(all, []byte(`   "}`)) || len(bytes.Trim(all[60:len(all)-2], " ")) != 0 {
		t.Fatalf("decoded %d bytes: %q…%q", len(all), all[:80], all[len(all)-10:])
	}
	if !json.Valid(all) {
		t.Error("the bomb is not JSON")
	}
	if len(bomb) > 8<<10 {
		t.Errorf("4 MiB compressed to %d bytes", len(bomb))
	}

	body := V1Body(testKey, Project{Lcut: 1000, Value: 1})
	liar := GzipLyingSize(body, 0xFFFFFFF0)
	if binary.LittleEndian.Uint32(liar[len(liar)-4:]) != 0xFFFFFFF0 {
		t.Error("trailer not rewritten")
	}
	zr, _ = gzip.NewReader(bytes.NewReader(liar))
	if _, err := io.ReadAll(zr); err != gzip.ErrChecksum {
		t.Errorf("lying trailer: %v, want a checksum error", err)
	}
	zr, err = gzip.NewReader(bytes.NewReader(GzipCorrupt(body)))
	if err == nil {
		_, err = io.ReadAll(zr)
	}
	if err == nil {
		t.Error("the corrupt stream decoded")
	}
}
