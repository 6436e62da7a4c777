package keys

import "testing"

// Golden names for list_1 of the layout reference's worked key. The data-store
// keys are statsig-node 6's (shared/spec/id-lists.md §1.1); the hash tags of
// the companions were computed by SameSlotKey and are pinned here so that a
// change of the tag search is noticed (it would orphan what a running
// deployment stored).
func TestIDListKeysGolden(t *testing.T) {
	k := MustParse(longKey)
	const h, p = "DTAAZ4lexssiyUagx9aS5cly2FLf0wud0zKZT2l1qPM=", "secret-abc123XYZ0123"
	cases := []struct {
		prefix                      string
		schema                      Schema
		manifest, list, tag         string
		fileID, staging, stageToken string
	}{
		{prefix: "", schema: Hashed,
			manifest: "statsig|/v1/get_id_lists|plain_text|" + h,
			list:     "statsig|id_list::list_1|plain_text|" + h,
			fileID:   "statsig|id_list::list_1|plain_text|" + h + "|fileid{a4r}",
			staging:  "statsig|id_list::list_1|plain_text|" + h + "|staging{a4r}", stageToken: "statsig|id_list::list_1|plain_text|" + h + "|staging-token{a4r}"},
		{prefix: "", schema: Prefix,
			manifest: "statsig|/v1/get_id_lists|plain_text|" + p,
			list:     "statsig|id_list::list_1|plain_text|" + p,
			fileID:   "statsig|id_list::list_1|plain_text|" + p + "|fileid{c9v}",
			staging:  "statsig|id_list::list_1|plain_text|" + p + "|staging{c9v}", stageToken: "statsig|id_list::list_1|plain_text|" + p + "|staging-token{c9v}"},
		{prefix: "team-a:", schema: Hashed,
			manifest: "team-a:statsig|/v1/get_id_lists|plain_text|" + h,
			list:     "team-a:statsig|id_list::list_1|plain_text|" + h,
			fileID:   "team-a:statsig|id_list::list_1|plain_text|" + h + "|fileid{8ln}",
			staging:  "team-a:statsig|id_list::list_1|plain_text|" + h + "|staging{8ln}", stageToken: "team-a:statsig|id_list::list_1|plain_text|" + h + "|staging-token{8ln}"},
		{prefix: "team-a:", schema: Prefix,
			manifest: "team-a:statsig|/v1/get_id_lists|plain_text|" + p,
			list:     "team-a:statsig|id_list::list_1|plain_text|" + p,
			fileID:   "team-a:statsig|id_list::list_1|plain_text|" + p + "|fileid{9l}",
			staging:  "team-a:statsig|id_list::list_1|plain_text|" + p + "|staging{9l}", stageToken: "team-a:statsig|id_list::list_1|plain_text|" + p + "|staging-token{9l}"},
		// A prefix with its own hash tag: the companions inherit it.
		{prefix: "{tenant}:", schema: Prefix,
			manifest: "{tenant}:statsig|/v1/get_id_lists|plain_text|" + p,
			list:     "{tenant}:statsig|id_list::list_1|plain_text|" + p,
			fileID:   "{tenant}:statsig|id_list::list_1|plain_text|" + p + "|fileid",
			staging:  "{tenant}:statsig|id_list::list_1|plain_text|" + p + "|staging", stageToken: "{tenant}:statsig|id_list::list_1|plain_text|" + p + "|staging-token"},
	}
	for _, c := range cases {
		if got := IDListsManifestKey(c.prefix, c.schema.ID(k)); got != c.manifest {
			t.Errorf("IDListsManifestKey(%q, %s) = %q, want %q", c.prefix, c.schema, got, c.manifest)
		}
		if got := NewManifestTarget(c.prefix, k, c.schema); got != (ManifestTarget{Schema: c.schema, Format: SFP, Key: c.manifest}) {
			t.Errorf("NewManifestTarget(%q, %s) = %+v", c.prefix, c.schema, got)
		}
		st := NewManifestTarget(c.prefix, k, c.schema).InFormat(String)
		if st.Format != String || st.Key != c.manifest || st.MarkerKey != SameSlotKey(c.manifest, "|lcut") || Slot(st.MarkerKey) != Slot(st.Key) {
			t.Errorf("InFormat(String) of %q, %s = %+v", c.prefix, c.schema, st)
		}
		got := NewIDListTarget(c.prefix, k, c.schema, "list_1")
		want := IDListTarget{Schema: c.schema, Name: "list_1", Key: c.list, FileIDKey: c.fileID, StagingKey: c.staging, StagingTokenKey: c.stageToken}
		if got != want {
			t.Errorf("NewIDListTarget(%q, %s):\n got %+v\nwant %+v", c.prefix, c.schema, got, want)
		}
		if IDListKey(c.prefix, "list_1", c.schema.ID(k)) != c.list || IDListFileIDKey(c.list) != c.fileID ||
			IDListStagingKey(c.list) != c.staging || IDListStagingTokenKey(c.list) != c.stageToken {
			t.Errorf("the name functions disagree with NewIDListTarget for %q, %s", c.prefix, c.schema)
		}
		for _, comp := range []string{c.fileID, c.staging, c.stageToken} {
			if Slot(comp) != Slot(c.list) {
				t.Errorf("%q is in slot %d, its list %q in slot %d", comp, Slot(comp), c.list, Slot(c.list))
			}
		}
	}
	// The data-store keys an SDK asks its adapter for are the names without
	// a prefix (statsig-node 6: getDataAdapterKey).
	if got, want := IDListsManifestKey("", "toLqw6JpNkmtVrl9E3wMePGJLF7yPwMpMaQKfR2GLfs="), "statsig|/v1/get_id_lists|plain_text|toLqw6JpNkmtVrl9E3wMePGJLF7yPwMpMaQKfR2GLfs="; got != want {
		t.Errorf("manifest key %q, want %q", got, want)
	}
	if got := Hashed.ID(MustParse("secret-test-key-123")); got != "toLqw6JpNkmtVrl9E3wMePGJLF7yPwMpMaQKfR2GLfs=" {
		t.Errorf("hashed id of the spec's key = %q", got)
	}
}

func TestIDListTargetsPerSchema(t *testing.T) {
	k := MustParse(longKey)
	schemas := []Schema{Hashed, Prefix}
	ls := IDListTargets("p:", k, schemas, "a.b-c_9")
	ms := ManifestTargets("p:", k, schemas)
	if len(ls) != 2 || len(ms) != 2 {
		t.Fatalf("got %d lists, %d manifests", len(ls), len(ms))
	}
	for i, s := range schemas {
		if ls[i] != NewIDListTarget("p:", k, s, "a.b-c_9") || ms[i] != NewManifestTarget("p:", k, s) {
			t.Errorf("schema %s: targets differ from the single-target functions", s)
		}
		if ls[i].Key != "p:statsig|id_list::a.b-c_9|plain_text|"+s.ID(k) {
			t.Errorf("schema %s: list key %q", s, ls[i].Key)
		}
	}
}
