package fakecdn

import (
	"context"
	"io"
	"net/http/httptest"
	"testing"

	"github.com/statsig-populator/statsig-populator/pkg/idlists"
	"github.com/statsig-populator/statsig-populator/pkg/keys"
)

// The fake's ID lists read back through the worker's own client: the
// manifest, a range download, an append, a recreation and a removal.
func TestIDListsThroughClient(t *testing.T) {
	k := keys.MustParse("secret-fakecdnIDListsKey000000000000")
	fake := New()
	fake.SetProject(k, Project{Lcut: 1000})
	srv := httptest.NewServer(fake)
	defer srv.Close()
	c := idlists.New(idlists.Options{BaseURL: srv.URL})
	ctx := context.Background()

	fake.PutIDList(k, "list_1", "123", 0, []byte("+ungWv48B\n+Ngi8oeRO\n"))
	res := c.FetchManifest(ctx, k)
	e, ok := res.Manifest.Entries["list_1"]
	if res.Err != nil || !ok || e.Size != 20 || e.FileID != "123" {
		t.Fatalf("manifest: %+v %v", res.Manifest, res.Err)
	}
	fake.AppendIDList(k, "list_1", []byte("-ungWv48B\n"))
	e, _ = c.FetchManifest(ctx, k).Manifest.Entries["list_1"]
	ch, err := c.OpenChunk(ctx, k, e, 20)
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(ch)
	ch.Close()
	if err != nil || string(got) != "-ungWv48B\n" || ch.Status != 206 {
		t.Fatalf("chunk %q %v status %d", got, err, ch.Status)
	}

	id := fake.RecreateIDList(k, "list_1", []byte("+AAAAAAAA\n"))
	e2, _ := c.FetchManifest(ctx, k).Manifest.Entries["list_1"]
	if e2.FileID != id || e2.CreationTime <= e.CreationTime || e2.Size != 10 {
		t.Fatalf("recreated: %+v", e2)
	}
	if _, err := c.OpenChunk(ctx, k, e, 20); err == nil {
		t.Fatal("the old file should be gone")
	}

	fake.SetIDListFault(k, IDListFault{FileBadSeek: true})
	fake.AppendIDList(k, "list_1", []byte("+BBBBBBBB\n"))
	e3, _ := c.FetchManifest(ctx, k).Manifest.Entries["list_1"]
	if ch, err := c.OpenChunk(ctx, k, e3, 10); err == nil {
		_, err = io.ReadAll(ch)
		ch.Close()
		if !idlists.IsBadChunk(err) {
			t.Fatalf("bad seek read as %v", err)
		}
	} else if !idlists.IsBadChunk(err) {
		t.Fatalf("bad seek: %v", err)
	}
	fake.ClearIDListFaults()

	fake.RemoveIDList(k, "list_1")
	if m := c.FetchManifest(ctx, k).Manifest; len(m.Entries) != 0 {
		t.Fatalf("removed list still listed: %+v", m)
	}
	fake.Revoke(k, 401)
	if r := c.FetchManifest(ctx, k); r.Status != 401 {
		t.Fatalf("revoked: %+v", r)
	}
	if l := SampleIDList(1, 3); len(l) != 30 || l[0] != '+' || l[29] != '\n' {
		t.Fatalf("sample %q", l)
	}
}
