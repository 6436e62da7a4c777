package main

// export and import (issue 14): the configured keys' payloads and ID lists to
// and from a snapshot archive (pkg/snapshot, docs/snapshots.md).

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"text/tabwriter"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/statsig-populator/statsig-populator/internal/wiring"
	"github.com/statsig-populator/statsig-populator/pkg/config"
	"github.com/statsig-populator/statsig-populator/pkg/fetcher"
	"github.com/statsig-populator/statsig-populator/pkg/idlists"
	"github.com/statsig-populator/statsig-populator/pkg/keys"
	"github.com/statsig-populator/statsig-populator/pkg/logging"
	"github.com/statsig-populator/statsig-populator/pkg/snapshot"
	"github.com/statsig-populator/statsig-populator/pkg/writer"
)

// redisOpTimeout bounds one Redis call of export and import.
const redisOpTimeout = 30 * time.Second

// listCopyChunk is how much of an ID list is read from Redis (GETRANGE) or
// staged into it (StageIDList) per call.
const listCopyChunk = 1 << 20

func snapshotConfig(stderr io.Writer) (config.Config, error) {
	cfg, err := config.Load(true)
	if err != nil {
		fmt.Fprintln(stderr, "populator:", err)
		return cfg, exitError{exitBadConfig}
	}
	redis.SetLogger(logging.RedisLogger(logging.New(stderr, cfg.LogLevel, cfg.LogFormat)))
	return cfg, nil
}

func runExport(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("export", flag.ContinueOnError)
	fs.SetOutput(stderr)
	out := fs.String("out", "", "the archive to write (.tar.gz); replaced atomically")
	fromCDN := fs.Bool("from-cdn", false, "fetch every payload from the CDN instead of reading Redis")
	if err := fs.Parse(args); err != nil {
		return exitError{exitBadConfig}
	}
	if *out == "" || fs.NArg() > 0 {
		fmt.Fprintln(stderr, "populator: usage: populator export --out FILE [--from-cdn]")
		return exitError{exitBadConfig}
	}
	cfg, err := snapshotConfig(stderr)
	if err != nil {
		return err
	}
	// The archive is written next to its final name and renamed over it
	// only when complete: a reader never sees half an archive.
	tmp, err := os.CreateTemp(filepath.Dir(*out), "."+filepath.Base(*out)+".tmp-*")
	if err != nil {
		fmt.Fprintln(stderr, "populator:", err)
		return exitError{exitFailure}
	}
	defer os.Remove(tmp.Name()) // a no-op after the rename
	defer tmp.Close()
	source := "redis"
	if *fromCDN {
		source = "cdn"
	}
	sw := snapshot.NewWriter(tmp, snapshot.WriterOptions{WorkerVersion: buildVersion(), Source: source})
	var ex exportStats
	if *fromCDN {
		err = exportFromCDN(ctx, cfg, sw, &ex, stderr)
	} else {
		err = exportFromRedis(ctx, cfg, sw, &ex, stderr)
	}
	if err != nil {
		return err
	}
	if err := sw.Close(); err != nil {
		fmt.Fprintln(stderr, "populator: writing the archive:", err)
		return exitError{exitFailure}
	}
	if err := tmp.Sync(); err != nil {
		fmt.Fprintln(stderr, "populator: writing the archive:", err)
		return exitError{exitFailure}
	}
	if err := tmp.Close(); err != nil {
		fmt.Fprintln(stderr, "populator: writing the archive:", err)
		return exitError{exitFailure}
	}
	if err := os.Rename(tmp.Name(), *out); err != nil {
		fmt.Fprintln(stderr, "populator:", err)
		return exitError{exitFailure}
	}
	fmt.Fprintf(stdout, "wrote %s: %d payloads and %d ID lists of %d keys (%d members) from %s\n",
		*out, ex.payloads, ex.lists, len(cfg.SDKKeys), sw.Members(), source)
	if len(ex.missing) > 0 {
		for _, m := range ex.missing {
			fmt.Fprintln(stdout, "  not in the archive:", m)
		}
		fmt.Fprintf(stdout, "%d entries could not be exported (listed above); the archive holds the rest\n", len(ex.missing))
		return exitError{exitFailure}
	}
	return nil
}

type exportStats struct {
	payloads, lists int
	missing         []string
}

// exportFromRedis reads, for every configured key and version, the target
// holding the newest lcut (lcuts of every target first, in pipelined chunks,
// then one payload at a time), validates it, and archives it; then each key's
// ID lists from its first schema.
func exportFromRedis(ctx context.Context, cfg config.Config, sw *snapshot.Writer, ex *exportStats, stderr io.Writer) error {
	rdb, target, err := connect(cfg, stderr)
	if err != nil {
		return err
	}
	defer rdb.Close()
	w := writer.New(rdb, 0)
	w.SetMaxPayload(cfg.MaxPayloadBytes)
	unreachable := func(err error) error {
		fmt.Fprintf(stderr, "populator: Redis at %s cannot be read: %s\n", target, redactRedisSecrets(err.Error(), cfg.Redis.Password, cfg.Redis.SentinelPassword))
		return exitError{exitRedisUnavailable}
	}
	type item struct {
		k keys.SDKKey
		v keys.Version
	}
	var items []item
	var targets []keys.Target
	var owner []int
	for _, k := range cfg.SDKKeys {
		for _, v := range cfg.Versions {
			for _, t := range cfg.Layout.Targets(k, v) {
				targets = append(targets, t)
				owner = append(owner, len(items))
			}
			items = append(items, item{k, v})
		}
	}
	best := make([]int, len(items)) // index into targets, -1: none
	bestLcut := make([]int64, len(items))
	for i := range best {
		best[i] = -1
	}
	for start := 0; start < len(targets); start += writer.ReadChunk {
		end := min(start+writer.ReadChunk, len(targets))
		rctx, cancel := context.WithTimeout(ctx, redisOpTimeout)
		stored, err := w.Inspect(rctx, targets[start:end])
		cancel()
		if err != nil {
			return unreachable(err)
		}
		for n, s := range stored {
			i := owner[start+n]
			if s.Present() && s.Lcut > bestLcut[i] {
				best[i], bestLcut[i] = start+n, s.Lcut
			}
		}
	}
	for i, it := range items {
		name := it.k.Redacted() + " " + string(it.v)
		if best[i] < 0 {
			ex.missing = append(ex.missing, name+": no payload in Redis")
			continue
		}
		rctx, cancel := context.WithTimeout(ctx, redisOpTimeout)
		e, err := w.Read(rctx, targets[best[i]])
		cancel()
		if err != nil && writer.IsUnreachable(err) {
			return unreachable(err)
		}
		if err != nil || e.Payload == nil {
			ex.missing = append(ex.missing, fmt.Sprintf("%s: %v", name, orMissing(err)))
			continue
		}
		meta, err := fetcher.Validate(e.Payload, it.v, it.k.HashedSDKKeyUsed())
		if err == nil && meta.Time != e.Lcut {
			err = fmt.Errorf("payload time %d differs from stored lcut %d", meta.Time, e.Lcut)
		}
		if err != nil {
			ex.missing = append(ex.missing, fmt.Sprintf("%s: %v", name, err))
			continue
		}
		if err := sw.AddPayload(snapshot.KeyID(it.k), it.v, e.Payload, meta.Time); err != nil {
			fmt.Fprintln(stderr, "populator: writing the archive:", err)
			return exitError{exitFailure}
		}
		ex.payloads++
	}
	if !cfg.IDLists {
		return nil
	}
	schema, format := cfg.Layout.Schemas[0], cfg.Layout.Formats[0]
	for _, k := range cfg.SDKKeys {
		err := exportIDListsFromRedis(ctx, rdb, w, cfg.Layout.Prefix, k, schema, format, cfg.MaxPayloadBytes, sw, ex)
		if err != nil {
			if writer.IsUnreachable(err) {
				return unreachable(err)
			}
			var keep *keyProblem
			if errors.As(err, &keep) {
				ex.missing = append(ex.missing, k.Redacted()+" id_lists: "+keep.msg)
				continue
			}
			fmt.Fprintln(stderr, "populator: writing the archive:", err)
			return exitError{exitFailure}
		}
	}
	return nil
}

// keyProblem is a key's ID lists that cannot be exported, the export going on.
type keyProblem struct{ msg string }

func (p *keyProblem) Error() string { return p.msg }

func orMissing(err error) error {
	if err == nil {
		return errors.New("no payload in Redis")
	}
	return err
}

// exportIDListsFromRedis archives k's stored ID-list manifest (byte for byte,
// with its marker) and the first size bytes of every list it announces: the
// lists are append-only for a fileID, so those bytes are what the manifest
// describes even if the worker appends meanwhile. A list replaced meanwhile
// (another fileID) fails the export; run it again.
func exportIDListsFromRedis(ctx context.Context, rdb redis.UniversalClient, w *writer.Writer, prefix string, k keys.SDKKey, s keys.Schema, f keys.Format, max int64, sw *snapshot.Writer, ex *exportStats) error {
	rctx, cancel := context.WithTimeout(ctx, redisOpTimeout)
	mj, marker, err := w.ReadIDListManifest(rctx, keys.NewManifestTarget(prefix, k, s).InFormat(f))
	cancel()
	if err != nil {
		return err
	}
	if mj == nil {
		return &keyProblem{"no ID-list manifest in Redis"}
	}
	m, err := idlists.ParseManifest(mj, max)
	if err != nil || len(m.Refused) > 0 {
		return &keyProblem{"the stored ID-list manifest does not validate"}
	}
	names := m.Names()
	targets := make([]keys.IDListTarget, len(names))
	for i, n := range names {
		targets[i] = keys.NewIDListTarget(prefix, k, s, n)
	}
	rctx, cancel = context.WithTimeout(ctx, redisOpTimeout)
	states, err := w.ReadIDLists(rctx, targets)
	cancel()
	if err != nil {
		return err
	}
	for i, n := range names {
		e, st := m.Entries[n], states[i]
		if st.Err != nil || st.FileID != e.FileID || st.Length < e.Size || e.Size == 0 {
			return &keyProblem{fmt.Sprintf("list %q in Redis does not match its manifest (run populator check)", n)}
		}
	}
	id := snapshot.KeyID(k)
	for i, n := range names {
		e := m.Entries[n]
		r := &rangeReader{ctx: ctx, rdb: rdb, key: targets[i].Key, size: e.Size}
		if err := sw.AddIDList(id, n, e.FileID, e.Size, r); err != nil {
			if r.err != nil {
				return r.err
			}
			return err
		}
		ex.lists++
	}
	// A replacement committed while the lists were read shows as another
	// fileID now: the bytes read may then mix two files.
	rctx, cancel = context.WithTimeout(ctx, redisOpTimeout)
	after, err := w.ReadIDLists(rctx, targets)
	cancel()
	if err != nil {
		return err
	}
	for i, n := range names {
		if after[i].FileID != m.Entries[n].FileID {
			return fmt.Errorf("ID list %q of %s was replaced while it was exported; run export again", n, k.Redacted())
		}
	}
	return sw.AddIDListManifest(id, mj, marker)
}

// rangeReader streams the first size bytes of a STRING with GETRANGE, one
// listCopyChunk at a time.
type rangeReader struct {
	ctx       context.Context
	rdb       redis.UniversalClient
	key       string
	size, off int64
	buf       []byte
	err       error
}

func (r *rangeReader) Read(p []byte) (int, error) {
	if len(r.buf) == 0 {
		if r.off >= r.size {
			return 0, io.EOF
		}
		end := min(r.off+listCopyChunk, r.size) - 1
		ctx, cancel := context.WithTimeout(r.ctx, redisOpTimeout)
		s, err := r.rdb.GetRange(ctx, r.key, r.off, end).Bytes()
		cancel()
		if err != nil {
			// The error may quote the key name, which holds part of the
			// secret under the prefix schema: say only what happened.
			r.err = fmt.Errorf("reading an ID list from Redis: %w", errorNoKey(err))
			return 0, r.err
		}
		if int64(len(s)) != end-r.off+1 {
			r.err = errors.New("an ID list became shorter while it was exported; run export again")
			return 0, r.err
		}
		r.buf = s
	}
	n := copy(p, r.buf)
	r.buf = r.buf[n:]
	r.off += int64(n)
	return n, nil
}

// errorNoKey keeps an error's classification (writer.IsUnreachable) but not
// its text beyond the first word.
type keylessError struct{ err error }

func (e keylessError) Error() string {
	if writer.IsUnreachable(e.err) {
		return "Redis unreachable"
	}
	return "Redis refused the read"
}
func (e keylessError) Unwrap() error { return e.err }

func errorNoKey(err error) error { return keylessError{err} }

// exportFromCDN fetches every configured key and version unconditionally
// with the worker's fetcher (validated as the worker validates), and the ID
// lists with its ID-list client, whole from byte 0.
func exportFromCDN(ctx context.Context, cfg config.Config, sw *snapshot.Writer, ex *exportStats, stderr io.Writer) error {
	ua := "statsig-populator/" + buildVersion()
	fc := fetcher.New(wiring.FetcherOptions(cfg, ua))
	for _, k := range cfg.SDKKeys {
		for _, v := range cfg.Versions {
			res := fc.Fetch(ctx, k, v, 0)
			if res.Outcome != fetcher.Updated {
				ex.missing = append(ex.missing, fmt.Sprintf("%s %s: %s %v", k.Redacted(), v, res.Outcome, res.Err))
				continue
			}
			if err := sw.AddPayload(snapshot.KeyID(k), v, res.Body, res.Meta.Time); err != nil {
				fmt.Fprintln(stderr, "populator: writing the archive:", err)
				return exitError{exitFailure}
			}
			ex.payloads++
		}
	}
	if !cfg.IDLists {
		return nil
	}
	ic := idlists.New(wiring.IDListClientOptions(cfg, ua))
	for _, k := range cfg.SDKKeys {
		res := ic.FetchManifest(ctx, k)
		if res.Outcome != fetcher.Updated {
			ex.missing = append(ex.missing, fmt.Sprintf("%s id_lists: %s %v", k.Redacted(), res.Outcome, res.Err))
			continue
		}
		m := res.Manifest.Screen(idlists.Limits{MaxListBytes: cfg.MaxPayloadBytes, Now: time.Now(), MaxClockSkew: cfg.MaxClockSkew})
		for _, r := range m.Refused {
			ex.missing = append(ex.missing, fmt.Sprintf("%s id_lists: list %q refused (%s)", k.Redacted(), r.Name, r.Reason))
		}
		id := snapshot.KeyID(k)
		var entries []idlists.Entry
		for _, n := range m.Names() {
			e := m.Entries[n]
			if e.Size == 0 {
				continue // the worker never stores an empty list
			}
			ch, err := ic.OpenChunk(ctx, k, e, 0)
			if err != nil {
				fmt.Fprintf(stderr, "populator: %s: ID list %q: %v\n", k.Redacted(), n, err)
				return exitError{exitFailure}
			}
			err = sw.AddIDList(id, n, e.FileID, e.Size, ch)
			ch.Close()
			if err != nil {
				fmt.Fprintf(stderr, "populator: %s: ID list %q: %v\n", k.Redacted(), n, err)
				return exitError{exitFailure}
			}
			entries = append(entries, e)
			ex.lists++
		}
		if err := sw.AddIDListManifest(id, idlists.MarshalManifest(entries), time.Now().UnixMilli()); err != nil {
			fmt.Fprintln(stderr, "populator: writing the archive:", err)
			return exitError{exitFailure}
		}
	}
	return nil
}

// importRow is one line of import's report.
type importRow struct {
	key         keys.SDKKey
	what        string // a version, or "id_lists"
	archiveLcut int64
	written     int // targets (or schemas) written
	stored      int64
	current     bool
	problem     string
}

func runImport(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("import", flag.ContinueOnError)
	fs.SetOutput(stderr)
	verifyOnly := fs.Bool("verify-only", false, "verify the archive and write nothing")
	if err := fs.Parse(args); err != nil {
		return exitError{exitBadConfig}
	}
	if fs.NArg() != 1 {
		fmt.Fprintln(stderr, "populator: usage: populator import [--verify-only] FILE")
		return exitError{exitBadConfig}
	}
	path := fs.Arg(0)
	cfg, err := snapshotConfig(stderr)
	if err != nil {
		return err
	}
	byID := map[string]keys.SDKKey{}
	for _, k := range cfg.SDKKeys {
		byID[snapshot.KeyID(k)] = k
	}
	f, err := os.Open(path)
	if err != nil {
		fmt.Fprintln(stderr, "populator:", err)
		return exitError{exitFailure}
	}
	defer f.Close()
	// Pass 1: everything verified before anything is written.
	v, err := snapshot.Verify(f, snapshot.Limits{
		MaxMemberBytes: cfg.MaxPayloadBytes, Now: time.Now(), MaxClockSkew: cfg.MaxClockSkew,
		Key: func(id string) (keys.SDKKey, bool) { k, ok := byID[id]; return k, ok },
	})
	if err != nil {
		fmt.Fprintf(stderr, "populator: %s: %v; nothing was written\n", path, err)
		return exitError{exitFailure}
	}
	skipped := 0
	for _, id := range v.IDs {
		if _, ok := byID[id]; !ok {
			skipped++
		}
	}
	fmt.Fprintf(stdout, "verified %s: format %d, created %s by populator %s from %s, %d keys (%d not configured, skipped), %d bytes\n",
		path, v.Manifest.Format, v.Manifest.CreatedAt.Format(time.RFC3339), v.Manifest.WorkerVersion, v.Manifest.Source, len(v.IDs), skipped, v.Bytes)
	if *verifyOnly {
		return nil
	}

	rdb, target, err := connect(cfg, stderr)
	if err != nil {
		return err
	}
	defer rdb.Close()
	unreachable := func(err error, written int) error {
		fmt.Fprintf(stderr, "populator: Redis at %s cannot be reached: %s; %d entries were written before it failed (each one whole, none older than what Redis held)\n",
			target, redactRedisSecrets(err.Error(), cfg.Redis.Password, cfg.Redis.SentinelPassword), written)
		return exitError{exitRedisUnavailable}
	}
	pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	err = rdb.Ping(pctx).Err()
	cancel()
	if err != nil {
		return unreachable(err, 0)
	}
	store := writer.New(rdb, cfg.KeyTTL)
	store.SetWaitReplicas(cfg.WaitReplicas, cfg.WaitTimeout)
	listStore := writer.New(rdb, wiring.IDListTTL(cfg))
	listStore.SetWaitReplicas(cfg.WaitReplicas, cfg.WaitTimeout)
	im := &importer{cfg: cfg, byID: byID, store: store, lists: listStore, token: "import-" + strconv.FormatInt(time.Now().UnixNano(), 36)}

	// Pass 2: the same file from its start; every member is checked again
	// against pass 1 before it is written.
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		fmt.Fprintln(stderr, "populator:", err)
		return exitError{exitFailure}
	}
	err = snapshot.Walk(f, v, func(it snapshot.Item) error { return im.item(ctx, v, it) })
	if err != nil {
		if writer.IsUnreachable(err) {
			return unreachable(err, im.written)
		}
		fmt.Fprintf(stderr, "populator: %s: %v; %d entries were written before that\n", path, err, im.written)
		return exitError{exitFailure}
	}

	rows, err := im.report(ctx, v)
	if err != nil {
		return unreachable(err, im.written)
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "SDK KEY\tVERSION\tARCHIVE LCUT\tWRITTEN\tREDIS LCUT\tCURRENT\tPROBLEM")
	bad := 0
	for _, r := range rows {
		if !r.current {
			bad++
		}
		fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%d\t%v\t%s\n", r.key.Redacted(), r.what, r.archiveLcut, r.written, r.stored, r.current, r.problem)
	}
	tw.Flush()
	fmt.Fprintf(stdout, "%d entries written; %d keys of the archive not configured (skipped)\n", im.written, skipped)
	if bad > 0 {
		fmt.Fprintf(stdout, "%d of %d configured key/version pairs are not current in Redis\n", bad, len(rows))
		return exitError{exitFailure}
	}
	fmt.Fprintf(stdout, "all %d configured key/version pairs are current in Redis\n", len(rows))
	return nil
}

// importer writes the members of a verified archive for the configured keys.
type importer struct {
	cfg          config.Config
	byID         map[string]keys.SDKKey
	store, lists *writer.Writer
	token        string
	written      int
	wrote        map[string]int // "<id> <version>" -> targets written
	// listSchemas is, for the key whose ID lists are being imported, the
	// schemas whose stored manifest is older than the archive's.
	listKey     string
	listSchemas []keys.Schema
}

func (im *importer) item(ctx context.Context, v *snapshot.Verified, it snapshot.Item) error {
	k, ok := im.byID[it.KeyID]
	if !ok {
		return nil // not configured: skipped (and counted by the caller)
	}
	if im.wrote == nil {
		im.wrote = map[string]int{}
	}
	switch it.Kind {
	case snapshot.KindPayload:
		if !hasVersion(im.cfg.Versions, it.Version) {
			return nil
		}
		p := &writer.Payload{Body: it.Body, Lcut: it.Lcut}
		targets := im.cfg.Layout.Targets(k, it.Version)
		any := false
		for _, t := range targets {
			// The worker's own script: written only when newer than what
			// the target holds, whole or not at all.
			wctx, cancel := context.WithTimeout(ctx, redisOpTimeout)
			res, err := im.store.Write(wctx, t, p)
			cancel()
			if err != nil {
				if writer.IsUnreachable(err) {
					return err
				}
				continue // reported by report: the target is not current
			}
			if res.Written {
				im.written++
				im.wrote[it.KeyID+" "+string(it.Version)]++
				any = true
			}
		}
		if any {
			// As the worker does after a write: a statsig-br sibling would
			// hide the JSON from server-core stores.
			dctx, cancel := context.WithTimeout(ctx, redisOpTimeout)
			err := im.store.DeleteSiblings(dctx, targets)
			cancel()
			if err != nil && writer.IsUnreachable(err) {
				return err
			}
		}
	case snapshot.KindIDList:
		if !im.cfg.IDLists {
			return nil
		}
		schemas, err := im.idListSchemas(ctx, v, k, it.KeyID)
		if err != nil {
			return err
		}
		return im.copyList(ctx, k, schemas, it)
	case snapshot.KindIDListManifest:
		if !im.cfg.IDLists {
			return nil
		}
		schemas, err := im.idListSchemas(ctx, v, k, it.KeyID)
		if err != nil {
			return err
		}
		for _, s := range schemas {
			mt := keys.NewManifestTarget(im.cfg.Layout.Prefix, k, s).InFormat(im.cfg.Layout.Formats[0])
			wctx, cancel := context.WithTimeout(ctx, redisOpTimeout)
			res, err := im.lists.WriteIDListManifest(wctx, mt, it.Body, it.Marker)
			cancel()
			if err != nil {
				if writer.IsUnreachable(err) {
					return err
				}
				continue
			}
			if res.Written {
				im.written++
				im.wrote[it.KeyID+" id_lists"]++
			}
		}
	}
	return nil
}

func hasVersion(vs []keys.Version, v keys.Version) bool {
	for _, x := range vs {
		if x == v {
			return true
		}
	}
	return false
}

// idListSchemas decides once per key which schemas take the archive's ID
// lists: those whose stored manifest marker is older than the archive's. A
// newer or equal one means Redis is already as current: nothing is written
// for that schema, lists included.
func (im *importer) idListSchemas(ctx context.Context, v *snapshot.Verified, k keys.SDKKey, id string) ([]keys.Schema, error) {
	if im.listKey == id {
		return im.listSchemas, nil
	}
	im.listKey, im.listSchemas = id, nil
	vk := v.Keys[id]
	if vk.IDListManifest == nil {
		return nil, nil
	}
	for _, s := range im.cfg.Layout.Schemas {
		mt := keys.NewManifestTarget(im.cfg.Layout.Prefix, k, s).InFormat(im.cfg.Layout.Formats[0])
		rctx, cancel := context.WithTimeout(ctx, redisOpTimeout)
		_, marker, err := im.lists.ReadIDListManifest(rctx, mt)
		cancel()
		if err != nil {
			if writer.IsUnreachable(err) {
				return nil, err
			}
			continue
		}
		if marker < vk.IDListManifest.Marker {
			im.listSchemas = append(im.listSchemas, s)
		}
	}
	return im.listSchemas, nil
}

// copyList stages the list into every schema that takes it, as it streams
// from the archive, and commits each stage only after the whole list matched
// its verified digest: readers see the old list or the new one, never a part.
// A schema already holding this fileID with at least these bytes keeps them.
func (im *importer) copyList(ctx context.Context, k keys.SDKKey, schemas []keys.Schema, it snapshot.Item) error {
	var targets []keys.IDListTarget
	for _, s := range schemas {
		targets = append(targets, keys.NewIDListTarget(im.cfg.Layout.Prefix, k, s, it.Name))
	}
	if len(targets) == 0 {
		return nil
	}
	rctx, cancel := context.WithTimeout(ctx, redisOpTimeout)
	states, err := im.lists.ReadIDLists(rctx, targets)
	cancel()
	if err != nil {
		return err
	}
	var todo []keys.IDListTarget
	for i, t := range targets {
		if states[i].Err == nil && states[i].FileID == it.FileID && states[i].Length >= it.Size {
			continue
		}
		todo = append(todo, t)
	}
	if len(todo) == 0 {
		return nil
	}
	buf := make([]byte, listCopyChunk)
	var off int64
	for {
		n, rerr := io.ReadFull(it.List, buf)
		if n > 0 {
			for _, t := range todo {
				wctx, cancel := context.WithTimeout(ctx, redisOpTimeout)
				res, err := im.lists.StageIDList(wctx, t, im.token, off, buf[:n])
				cancel()
				if err != nil {
					return err
				}
				if !res.Written {
					return fmt.Errorf("ID list %q: another writer took over the staging key", it.Name)
				}
			}
			off += int64(n)
		}
		if rerr == io.EOF || rerr == io.ErrUnexpectedEOF {
			// The list reader returns io.EOF only once the whole list
			// matched its verified digest (ReadFull turns it into
			// ErrUnexpectedEOF for a short last chunk).
			break
		}
		if rerr != nil {
			for _, t := range todo {
				actx, cancel := context.WithTimeout(ctx, redisOpTimeout)
				_, _ = im.lists.AbortIDList(actx, t, im.token)
				cancel()
			}
			return rerr
		}
	}
	for _, t := range todo {
		wctx, cancel := context.WithTimeout(ctx, redisOpTimeout)
		res, err := im.lists.CommitIDList(wctx, t, im.token, it.FileID, off)
		cancel()
		if err != nil {
			return err
		}
		if res.Written {
			im.written++
		}
	}
	return nil
}

// report reads back, for every configured key and version (and ID lists),
// what Redis holds now: current when every target's lcut is at least the
// archive's.
func (im *importer) report(ctx context.Context, v *snapshot.Verified) ([]importRow, error) {
	var rows []importRow
	var targets []keys.Target
	var owner []int
	for _, k := range im.cfg.SDKKeys {
		id := snapshot.KeyID(k)
		vk := v.Keys[id]
		for _, ver := range im.cfg.Versions {
			r := importRow{key: k, what: string(ver), written: im.wrote[id+" "+string(ver)]}
			if vk == nil {
				r.problem = "not in the archive"
			} else if m, ok := vk.Payloads[ver]; !ok {
				r.problem = "this version is not in the archive"
			} else {
				r.archiveLcut = m.Lcut
				for _, t := range im.cfg.Layout.Targets(k, ver) {
					targets = append(targets, t)
					owner = append(owner, len(rows))
				}
				r.current = true
			}
			rows = append(rows, r)
		}
	}
	for start := 0; start < len(targets); start += writer.ReadChunk {
		end := min(start+writer.ReadChunk, len(targets))
		rctx, cancel := context.WithTimeout(ctx, redisOpTimeout)
		stored, err := im.store.Inspect(rctx, targets[start:end])
		cancel()
		if err != nil {
			return nil, err
		}
		for n, s := range stored {
			r := &rows[owner[start+n]]
			if r.stored == 0 || s.Lcut < r.stored {
				r.stored = s.Lcut
			}
			if s.Err != nil || s.Lcut < r.archiveLcut {
				r.current = false
				if s.Err != nil {
					r.problem = s.Err.Error()
				} else if r.problem == "" {
					r.problem = "a target holds an older lcut than the archive"
				}
			}
		}
	}
	if im.cfg.IDLists {
		for _, k := range im.cfg.SDKKeys {
			id := snapshot.KeyID(k)
			vk := v.Keys[id]
			if vk == nil || vk.IDListManifest == nil {
				continue // reported above, or a key without ID lists
			}
			r := importRow{key: k, what: "id_lists", archiveLcut: vk.IDListManifest.Marker, written: im.wrote[id+" id_lists"], current: true}
			for _, s := range im.cfg.Layout.Schemas {
				mt := keys.NewManifestTarget(im.cfg.Layout.Prefix, k, s).InFormat(im.cfg.Layout.Formats[0])
				rctx, cancel := context.WithTimeout(ctx, redisOpTimeout)
				_, marker, err := im.lists.ReadIDListManifest(rctx, mt)
				cancel()
				if err != nil {
					return nil, err
				}
				if r.stored == 0 || marker < r.stored {
					r.stored = marker
				}
				if marker < r.archiveLcut {
					r.current, r.problem = false, "the stored ID-list manifest is older than the archive's"
				}
			}
			rows = append(rows, r)
		}
	}
	return rows, nil
}
