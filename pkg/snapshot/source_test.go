package snapshot

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/statsig-populator/statsig-populator/pkg/fetcher"
	"github.com/statsig-populator/statsig-populator/pkg/idlists"
	"github.com/statsig-populator/statsig-populator/pkg/keys"
)

// The offline source answers the worker's own clients as the CDN would:
// full and conditional payloads, the ID-list manifest pointing at itself,
// list ranges; a replaced archive is served once it verified, a damaged one
// never.
func TestSourceServesTheWorkersClients(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "snapshot.tar.gz")
	src, err := NewSource(path, limits, dir, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	ctx := context.Background()
	fc := fetcher.New(fetcher.Options{BaseURL: SourceBaseURL, Transport: src, Timeout: 5 * time.Second, MaxPayloadBytes: 1 << 20,
		Now: func() time.Time { return time.UnixMilli(1700000000000) }})
	ic := idlists.New(idlists.Options{BaseURL: SourceBaseURL, Transport: src, Now: func() time.Time { return time.UnixMilli(1700000000000) }})

	// No archive yet: every fetch fails, none is "unauthorized".
	if _, err := src.Reload(); err == nil {
		t.Fatal("a missing file loaded")
	}
	if r := fc.Fetch(ctx, keyA, keys.V1, 0); r.Outcome == fetcher.Updated || r.Outcome == fetcher.Unauthorized {
		t.Fatalf("before any archive: %+v", r)
	}

	if err := os.WriteFile(path, sample(t), 0o600); err != nil {
		t.Fatal(err)
	}
	if changed, err := src.Reload(); !changed || err != nil {
		t.Fatalf("load: %v %v", changed, err)
	}
	r := fc.Fetch(ctx, keyA, keys.V2, 0)
	if r.Outcome != fetcher.Updated || r.Meta.Time != 1700000000000 {
		t.Fatalf("full fetch: %+v", r)
	}
	if r := fc.Fetch(ctx, keyA, keys.V2, 1700000000000); r.Outcome != fetcher.NoUpdate {
		t.Fatalf("conditional fetch: %+v", r)
	}
	if r := fc.Fetch(ctx, keys.MustParse("secret-notInTheArchive000000000000"), keys.V1, 0); r.Outcome == fetcher.Updated || r.Outcome == fetcher.Unauthorized {
		t.Fatalf("a key the archive lacks: %+v", r)
	}

	m := ic.FetchManifest(ctx, keyA)
	e, ok := m.Manifest.Entries["list_1"]
	if m.Err != nil || !ok || e.FileID != "file-1" || e.Size != int64(len(list1)) {
		t.Fatalf("ID-list manifest: %+v", m)
	}
	ch, err := ic.OpenChunk(ctx, keyA, e, 100)
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(ch)
	ch.Close()
	if err != nil || !bytes.Equal(got, list1[100:]) || ch.Status != 206 {
		t.Fatalf("range: %d bytes, %v, status %d", len(got), err, ch.Status)
	}
	// A key the archive holds no ID lists for: not "no lists" (that would
	// delete the stored ones), an error the syncer retries.
	if m := ic.FetchManifest(ctx, keyB); m.Status != 404 || m.Outcome == fetcher.Unauthorized {
		t.Fatalf("a key without ID lists: %+v", m)
	}
	// A list URL names its fileID: another file under the old entry is 404.
	stale := e
	stale.FileID, stale.URL = "file-0", strings.Replace(e.URL, "/file-1/", "/file-0/", 1)
	if !strings.Contains(e.URL, "/file-1/") {
		t.Fatalf("list URL %q lacks its fileID", e.URL)
	}
	if _, err := ic.OpenChunk(ctx, keyA, stale, 0); err == nil || !strings.Contains(err.Error(), "404") {
		t.Fatalf("a stale fileID: %v", err)
	}

	// A damaged replacement is refused; the loaded archive stays served.
	bad := sample(t)
	bad[len(bad)/2] ^= 0xff
	time.Sleep(10 * time.Millisecond) // another mtime
	os.WriteFile(path, bad, 0o600)
	if changed, err := src.Reload(); changed || err == nil {
		t.Fatalf("a damaged archive: %v %v", changed, err)
	}
	if r := fc.Fetch(ctx, keyA, keys.V1, 0); r.Outcome != fetcher.Updated {
		t.Fatalf("after a refused replacement: %+v", r)
	}
	if _, n, ok := src.Loaded(); !ok || n != 2 {
		t.Fatalf("Loaded: %d %v", n, ok)
	}
}

// Absurd Range headers and paths get an answer, never a panic or another
// file's bytes.
func TestSourceAbsurdRequests(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "snapshot.tar.gz")
	os.WriteFile(path, sample(t), 0o600)
	src, err := NewSource(path, limits, dir, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	if _, err := src.Reload(); err != nil {
		t.Fatal(err)
	}
	file := SourceBaseURL + "/id_list_files/" + KeyID(keyA) + "/file-1/list_1"
	size := len(list1)
	cases := []struct {
		url, rng string
		status   int
	}{
		{file, "", 200},
		{file, "bytes=0-", 206},
		{file, "bytes=" + strconv.Itoa(size-1) + "-", 206},
		{file, "bytes=" + strconv.Itoa(size) + "-", 416},
		{file, "bytes=99999999999999999999-", 400},
		{file, "bytes=9223372036854775807-", 416},
		{file, "bytes=-5", 400},
		{file, "bytes=0-10", 400},
		{file, "bytes=abc-", 400},
		{file, "items=0-", 400},
		{file, "bytes=0-,5-", 400},
		{SourceBaseURL + "/id_list_files/" + KeyID(keyA) + "/file-1/../list_1", "", 404},
		{SourceBaseURL + "/id_list_files/" + KeyID(keyA), "", 404},
		{SourceBaseURL + "/id_list_files/" + strings.Repeat("a", 10000), "", 404},
		{SourceBaseURL + "/v1/download_config_specs/not-a-key%00.json", "", 404},
		{SourceBaseURL + "/v1/download_config_specs/" + strings.Repeat("x", 100000) + ".json", "", 404},
		{SourceBaseURL + "/v3/download_config_specs/" + keyA.Reveal() + ".json", "", 404},
		{SourceBaseURL + "/v1/download_config_specs/" + keyA.Reveal() + ".json?sinceTime=-9223372036854775808", "", 200},
	}
	for _, c := range cases {
		req, err := http.NewRequest(http.MethodGet, c.url, nil)
		if err != nil {
			t.Fatal(err)
		}
		if c.rng != "" {
			req.Header.Set("Range", c.rng)
		}
		resp, err := src.RoundTrip(req)
		if err != nil {
			t.Errorf("%.80s %q: %v", c.url, c.rng, err)
			continue
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != c.status {
			t.Errorf("%.80s %q: status %d, want %d", c.url, c.rng, resp.StatusCode, c.status)
		}
		if c.status == 206 && !bytes.HasSuffix(list1, body) {
			t.Errorf("%q: a range that is not the file's tail", c.rng)
		}
	}
	post, _ := http.NewRequest(http.MethodPost, file, strings.NewReader("x"))
	if resp, err := src.RoundTrip(post); err != nil || resp.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("POST: %v %v", resp, err)
	}
}
