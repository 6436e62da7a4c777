package keys

// ID lists (issue 12): the key names statsig-node ≥ 6 asks its data adapter
// for (shared/spec/id-lists.md §1.1), with the deployment's prefix in front,
// and the companions the worker keeps next to each list.
//
//	{prefix}statsig|/v1/get_id_lists|plain_text|{id}        HASH: config (manifest JSON), lcut (change marker), encoding
//	{prefix}statsig|id_list::{name}|plain_text|{id}         STRING: the list file, append-only per fileID
//	{list}|fileid{tag}                                      STRING: the fileID the list's bytes belong to
//	{list}|staging{tag}                                     STRING: a replacement being downloaded
//	{list}|staging-token{tag}                               STRING: which writer owns the staging key
//
// The companions are SameSlotKey names: one script can then guard, append to
// or rename over the list atomically, on Redis Cluster too. {id} is the
// schema's id (Schema.ID), as for the download_config_specs keys; {name} is a
// manifest name that idlists.ValidName accepted (no '|', ':', '{' or '}').

// IDListsPath is the path segment of the manifest's data-store key. It has
// a leading slash (statsig-node fixed that in 6.0; earlier 6.0 builds used
// "v1/get_id_lists").
const IDListsPath = "/v1/get_id_lists"

// IDListsManifestKey is the manifest HASH's name,
// {prefix}statsig|/v1/get_id_lists|plain_text|{id}.
func IDListsManifestKey(prefix, id string) string {
	return prefix + "statsig|" + IDListsPath + "|" + string(PlainText) + "|" + id
}

// IDListKey is one list's STRING, {prefix}statsig|id_list::{name}|plain_text|{id}.
func IDListKey(prefix, name, id string) string {
	return prefix + "statsig|id_list::" + name + "|" + string(PlainText) + "|" + id
}

// The suffixes of a list's companions (before SameSlotKey's hash tag).
const (
	IDListFileIDSuffix       = "|fileid"
	IDListStagingSuffix      = "|staging"
	IDListStagingTokenSuffix = "|staging-token"
)

// IDListFileIDKey is the companion holding the fileID of listKey's bytes, in
// listKey's cluster slot.
func IDListFileIDKey(listKey string) string { return SameSlotKey(listKey, IDListFileIDSuffix) }

// IDListStagingKey is where a replacement of listKey is assembled before it is
// renamed over the list, in listKey's cluster slot.
func IDListStagingKey(listKey string) string { return SameSlotKey(listKey, IDListStagingSuffix) }

// IDListStagingTokenKey holds the token of the writer that owns
// IDListStagingKey(listKey), in listKey's cluster slot.
func IDListStagingTokenKey(listKey string) string {
	return SameSlotKey(listKey, IDListStagingTokenSuffix)
}

// IDListTarget is one ID list of one SDK key under one schema: the list and
// its companions, all in one cluster slot.
type IDListTarget struct {
	Schema Schema
	// Name is the list's name from the manifest.
	Name string
	// Key is the list STRING the SDKs read.
	Key string
	// FileIDKey holds the fileID Key's bytes belong to.
	FileIDKey string
	// StagingKey and StagingTokenKey hold a replacement being downloaded
	// and the token of the writer assembling it.
	StagingKey      string
	StagingTokenKey string
}

// ManifestTarget is the ID-list manifest of one SDK key under one schema: a
// HASH (format sfp: fields config, lcut, encoding) or a STRING holding the
// manifest JSON (format string), whose change marker is then kept in
// MarkerKey, in Key's cluster slot.
type ManifestTarget struct {
	Schema    Schema
	Format    Format // SFP or String
	Key       string
	MarkerKey string // String format only
}

// InFormat is t in format f: the same key name, as a HASH (SFP) or as a
// STRING with its marker companion (String).
func (t ManifestTarget) InFormat(f Format) ManifestTarget {
	t.Format, t.MarkerKey = f, ""
	if f == String {
		t.MarkerKey = SameSlotKey(t.Key, "|lcut")
	}
	return t
}

// NewIDListTarget names list name of k under schema s, with prefix in front.
func NewIDListTarget(prefix string, k SDKKey, s Schema, name string) IDListTarget {
	key := IDListKey(prefix, name, s.ID(k))
	return IDListTarget{
		Schema:          s,
		Name:            name,
		Key:             key,
		FileIDKey:       IDListFileIDKey(key),
		StagingKey:      IDListStagingKey(key),
		StagingTokenKey: IDListStagingTokenKey(key),
	}
}

// NewManifestTarget names the manifest HASH (format sfp) of k under schema s,
// with prefix in front; InFormat gives the string format's.
func NewManifestTarget(prefix string, k SDKKey, s Schema) ManifestTarget {
	return ManifestTarget{Schema: s, Format: SFP, Key: IDListsManifestKey(prefix, s.ID(k))}
}

// IDListTargets is list name of k under each schema, in that order.
func IDListTargets(prefix string, k SDKKey, schemas []Schema, name string) []IDListTarget {
	out := make([]IDListTarget, 0, len(schemas))
	for _, s := range schemas {
		out = append(out, NewIDListTarget(prefix, k, s, name))
	}
	return out
}

// ManifestTargets is the manifest HASH of k under each schema, in that order.
func ManifestTargets(prefix string, k SDKKey, schemas []Schema) []ManifestTarget {
	out := make([]ManifestTarget, 0, len(schemas))
	for _, s := range schemas {
		out = append(out, NewManifestTarget(prefix, k, s))
	}
	return out
}
