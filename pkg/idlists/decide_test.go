package idlists

import (
	"reflect"
	"slices"
	"testing"
)

func TestDecide(t *testing.T) {
	st := func(fileID string, ct, length int64, bad int) *Stored {
		return &Stored{FileID: fileID, CreationTime: ct, Length: length, BadChunks: bad}
	}
	en := func(fileID string, ct, size int64) *Entry {
		return &Entry{Name: "l", URL: "https://cdn.example/l", FileID: fileID, CreationTime: ct, Size: size}
	}
	cases := []struct {
		name   string
		stored *Stored
		entry  *Entry
		want   Decision
	}{
		{"nothing anywhere", nil, nil, Decision{Nothing, 0, 0, "not_in_manifest"}},
		{"left the manifest", st("F", 5, 20, 0), nil, Decision{Remove, 0, 0, "not_in_manifest"}},
		{"left the manifest after bad chunks", st("F", 5, 20, 9), nil, Decision{Remove, 0, 0, "not_in_manifest"}},
		{"new list", nil, en("F", 5, 20), Decision{Replace, 0, 20, "new_list"}},
		{"new empty list", nil, en("F", 5, 0), Decision{Replace, 0, 0, "new_list"}},
		{"unchanged", st("F", 5, 20, 0), en("F", 5, 20), Decision{Nothing, 0, 0, "unchanged"}},
		{"unchanged empty", st("F", 5, 0, 0), en("F", 5, 0), Decision{Nothing, 0, 0, "unchanged"}},
		{"grown", st("F", 5, 20, 0), en("F", 5, 30), Decision{Append, 20, 10, "grown"}},
		{"grown from empty", st("F", 5, 0, 0), en("F", 5, 30), Decision{Append, 0, 30, "grown"}},
		{"grown after one bad chunk", st("F", 5, 20, 1), en("F", 5, 30), Decision{Append, 20, 10, "grown"}},
		{"grown after two bad chunks", st("F", 5, 20, MaxBadChunks-1), en("F", 5, 30), Decision{Append, 20, 10, "grown"}},
		{"grown after too many bad chunks", st("F", 5, 20, MaxBadChunks), en("F", 5, 30), Decision{Replace, 0, 30, "bad_chunks"}},
		{"far too many bad chunks", st("F", 5, 20, 1000), en("F", 5, 30), Decision{Replace, 0, 30, "bad_chunks"}},
		{"shrunk, same fileID", st("F", 5, 30, 0), en("F", 5, 20), Decision{Replace, 0, 20, "shrunk"}},
		{"shrunk to nothing", st("F", 5, 30, 0), en("F", 5, 0), Decision{Replace, 0, 0, "shrunk"}},
		{"negative stored length", st("F", 5, -1, 0), en("F", 5, 20), Decision{Replace, 0, 20, "shrunk"}},
		{"recreated, newer", st("F", 5, 30, 0), en("G", 6, 10), Decision{Replace, 0, 10, "new_file_id"}},
		{"recreated, same creationTime", st("F", 5, 30, 0), en("G", 5, 40), Decision{Replace, 0, 40, "new_file_id"}},
		{"recreated, same size", st("F", 5, 30, 0), en("G", 5, 30), Decision{Replace, 0, 30, "new_file_id"}},
		{"recreated after bad chunks", st("F", 5, 30, 9), en("G", 6, 30), Decision{Replace, 0, 30, "new_file_id"}},
		{"stored without fileID", st("", 0, 30, 0), en("G", 0, 30), Decision{Replace, 0, 30, "new_file_id"}},
		{"older creationTime, new fileID", st("F", 5, 30, 0), en("G", 4, 50), Decision{Ignore, 0, 0, "older_creation_time"}},
		{"older creationTime, same fileID", st("F", 5, 30, 0), en("F", 4, 50), Decision{Ignore, 0, 0, "older_creation_time"}},
		{"older creationTime after bad chunks", st("F", 5, 30, 9), en("G", 4, 50), Decision{Ignore, 0, 0, "older_creation_time"}},
		{"newer creationTime, same fileID, grown", st("F", 5, 20, 0), en("F", 6, 30), Decision{Append, 20, 10, "grown"}},
		{"newer creationTime, same fileID, same size", st("F", 5, 20, 0), en("F", 6, 20), Decision{Nothing, 0, 0, "unchanged"}},
	}
	for _, c := range cases {
		got := Decide(c.stored, c.entry)
		if got != c.want {
			t.Errorf("%s: Decide = %+v, want %+v", c.name, got, c.want)
		}
		if !slices.Contains(DecisionReasons, got.Reason) {
			t.Errorf("%s: reason %q not in DecisionReasons", c.name, got.Reason)
		}
		if (got.Action == Append || got.Action == Replace) && got.Offset+got.Length != c.entry.Size {
			t.Errorf("%s: offset %d + length %d != size %d", c.name, got.Offset, got.Length, c.entry.Size)
		}
	}
	if Append.String() != "append" || Action(42).String() != "unknown" {
		t.Error("Action.String")
	}
}

func TestPlan(t *testing.T) {
	stored := map[string]Stored{
		"same":    {FileID: "F", CreationTime: 1, Length: 20},
		"grown":   {FileID: "F", CreationTime: 1, Length: 20},
		"gone":    {FileID: "F", CreationTime: 1, Length: 20},
		"garbage": {FileID: "F", CreationTime: 1, Length: 20}, // its entry is refused this time
		"older":   {FileID: "F", CreationTime: 9, Length: 20},
	}
	e := func(name, fileID string, ct, size int64) Entry {
		return Entry{Name: name, URL: "https://cdn.example/" + name, FileID: fileID, CreationTime: ct, Size: size}
	}
	m := Manifest{
		Entries: map[string]Entry{
			"same":  e("same", "F", 1, 20),
			"grown": e("grown", "F", 1, 30),
			"new":   e("new", "N", 2, 10),
			"older": e("older", "G", 8, 10),
		},
		Refused: []Refusal{{Name: "a|b", Reason: "bad_name"}, {Name: "garbage", Reason: "bad_url"}},
	}
	got := Plan(stored, m)
	want := []Step{
		{Name: "garbage", Decision: Decision{Nothing, 0, 0, "refused_entry"}},
		{Name: "gone", Decision: Decision{Remove, 0, 0, "not_in_manifest"}},
		{Name: "grown", Entry: m.Entries["grown"], Decision: Decision{Append, 20, 10, "grown"}},
		{Name: "new", Entry: m.Entries["new"], Decision: Decision{Replace, 0, 10, "new_list"}},
		{Name: "older", Entry: m.Entries["older"], Decision: Decision{Ignore, 0, 0, "older_creation_time"}},
		{Name: "same", Entry: m.Entries["same"], Decision: Decision{Nothing, 0, 0, "unchanged"}},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("Plan =\n%+v\nwant\n%+v", got, want)
	}

	// An empty manifest removes every stored list; nothing stored and an
	// empty manifest plan nothing.
	if got := Plan(stored, Manifest{}); len(got) != 5 || got[0].Action != Remove || got[4].Action != Remove {
		t.Errorf("empty manifest: %+v", got)
	}
	if got := Plan(nil, Manifest{}); len(got) != 0 {
		t.Errorf("nothing: %+v", got)
	}
}
