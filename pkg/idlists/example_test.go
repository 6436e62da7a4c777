package idlists_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"time"

	"github.com/statsig-populator/statsig-populator/pkg/idlists"
	"github.com/statsig-populator/statsig-populator/pkg/keys"
)

// One poll of a key's ID lists, as the poller and writer will run it: fetch
// the manifest, plan against what is stored, stream each chunk into a stage
// and commit it only after the chunk read to its end.
func Example() {
	file := "+ungWv48B\n+Ngi8oeRO\n-ungWv48B\n"
	var srv *httptest.Server
	srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasPrefix(r.URL.Path, "/v1/get_id_lists/") {
			fmt.Fprintf(w, `{"list_1":{"name":"list_1","size":30,"url":"%s/v1/download_id_list_file/list_1","creationTime":0,"fileID":"123"}}`, srv.URL)
			return
		}
		http.ServeContent(w, r, "", time.Time{}, strings.NewReader(file))
	}))
	defer srv.Close()

	ctx := context.Background()
	key := keys.MustParse("secret-exampleKey123")
	c := idlists.New(idlists.Options{BaseURL: srv.URL, UserAgent: "statsig-populator/example"})

	res := c.FetchManifest(ctx, key)
	if res.Err != nil {
		fmt.Println(res.Label, res.Err)
		return
	}
	// Redis holds the first 20 bytes of list_1 (fileID 123) and a list_2
	// that Statsig deleted.
	stored := map[string]idlists.Stored{
		"list_1": {FileID: "123", CreationTime: 0, Length: 20},
		"list_2": {FileID: "9", CreationTime: 0, Length: 10},
	}
	for _, step := range idlists.Plan(stored, res.Manifest) {
		fmt.Println(step.Name, step.Action, step.Reason, step.Offset, step.Length)
		if (step.Action != idlists.Append && step.Action != idlists.Replace) || step.Length == 0 {
			continue
		}
		ch, err := c.OpenChunk(ctx, key, step.Entry, step.Offset)
		if err != nil {
			fmt.Println(idlists.ChunkLabel(err), idlists.IsBadChunk(err))
			continue
		}
		var stage strings.Builder // stands for a temporary Redis key
		_, err = io.Copy(&stage, ch)
		ch.Close()
		if err != nil {
			fmt.Println("discard the stage:", idlists.ChunkLabel(err))
			continue
		}
		fmt.Printf("commit %q at offset %d (status %d)\n", stage.String(), ch.Offset, ch.Status)
	}
	// Output:
	// list_1 append grown 20 10
	// commit "-ungWv48B\n" at offset 20 (status 206)
	// list_2 remove not_in_manifest 0 0
}
