package main

import (
	"context"
	"encoding/json"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/statsig-populator/statsig-populator/pkg/idlists"
	"github.com/statsig-populator/statsig-populator/pkg/keys"
	"github.com/statsig-populator/statsig-populator/pkg/writer"
)

// checkIDLists reads each key's ID-list manifest per schema, and every list
// it announces (length, first byte and fileID only, in one pipeline), and
// judges them as the SDKs read them: one row per key and schema. The error
// is set only when Redis could not be read.
func checkIDLists(ctx context.Context, w *writer.Writer, prefix string, format keys.Format, sdkKeys []keys.SDKKey, schemas []keys.Schema) ([]checkRow, error) {
	var rows []checkRow
	for _, k := range sdkKeys {
		for _, s := range schemas {
			r := checkRow{SDKKey: k.Redacted(), Version: "id_lists", Format: string(format), Schema: string(s)}
			rctx, cancel := context.WithTimeout(ctx, 30*time.Second)
			b, marker, err := w.ReadIDListManifest(rctx, keys.NewManifestTarget(prefix, k, s).InFormat(format))
			cancel()
			if err != nil {
				if writer.IsUnreachable(err) || ctx.Err() != nil {
					return nil, err
				}
				r.Problem = err.Error()
				rows = append(rows, r)
				continue
			}
			r.Lcut = marker
			if b == nil {
				r.Problem = "no ID-list manifest: statsig-node's adapter read fails and it falls back to the network; go-sdk finds no lists"
				rows = append(rows, r)
				continue
			}
			r.Present = true
			var m map[string]idlists.Entry
			if err := json.Unmarshal(b, &m); err != nil || m == nil {
				r.Problem = "the manifest is not a JSON object"
				rows = append(rows, r)
				continue
			}
			r.ValidJSON = true
			names := make([]string, 0, len(m))
			for n := range m {
				names = append(names, n)
			}
			sort.Strings(names)
			targets := make([]keys.IDListTarget, len(names))
			for i, n := range names {
				targets[i] = keys.NewIDListTarget(prefix, k, s, n)
			}
			rctx, cancel = context.WithTimeout(ctx, 30*time.Second)
			states, err := w.ReadIDLists(rctx, targets)
			cancel()
			if err != nil {
				return nil, err
			}
			var problems []string
			for i, n := range names {
				r.Size += int(states[i].Length)
				if p := idListProblem(n, m[n], states[i]); p != "" {
					problems = append(problems, p)
				}
			}
			if len(problems) > 0 {
				if len(problems) > 3 {
					problems = append(problems[:3], fmt.Sprintf("and %d more", len(problems)-3))
				}
				r.Problem = strings.Join(problems, "; ")
			}
			r.HasUpdates = true
			rows = append(rows, r)
		}
	}
	return rows, nil
}

// idListProblem is what is wrong with one announced list, "" when nothing:
// the manifest must announce exactly the stored length, of a non-empty list
// of +/- lines, under the fileID recorded beside it, with a url (go-sdk skips
// entries without one).
func idListProblem(name string, e idlists.Entry, st writer.IDListState) string {
	switch {
	case st.Err != nil:
		return fmt.Sprintf("list %q: %v", name, st.Err)
	case st.Length == 0:
		return fmt.Sprintf("list %q is announced but not stored", name)
	case e.Size != st.Length:
		return fmt.Sprintf("list %q: the manifest announces %d bytes, %d are stored", name, e.Size, st.Length)
	case st.First != '+' && st.First != '-':
		return fmt.Sprintf("list %q does not start with + or -", name)
	case e.FileID == "" || e.URL == "":
		return fmt.Sprintf("list %q: the manifest entry has no fileID or url", name)
	case st.FileID != e.FileID:
		return fmt.Sprintf("list %q: stored bytes belong to another fileID than announced", name)
	}
	return ""
}
