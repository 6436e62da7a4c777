package main

// The read-only subcommands: keys (what is written where) and check (what
// Redis holds, read the way an SDK reads it).

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/statsig-populator/statsig-populator/pkg/config"
	"github.com/statsig-populator/statsig-populator/pkg/fetcher"
	"github.com/statsig-populator/statsig-populator/pkg/keys"
	"github.com/statsig-populator/statsig-populator/pkg/logging"
	"github.com/statsig-populator/statsig-populator/pkg/writer"
)

// keyList collects repeated --sdk-key flags.
type keyList []keys.SDKKey

func (l *keyList) String() string { return fmt.Sprint(len(*l), " keys") }
func (l *keyList) Set(s string) error {
	k, err := keys.Parse(s)
	if err != nil {
		return err
	}
	*l = append(*l, k)
	return nil
}

// keyRow is one line of `populator keys`.
type keyRow struct {
	SDKKey  string `json:"sdk_key"`
	Version string `json:"version"`
	Format  string `json:"format"`
	Schema  string `json:"schema"`
	Type    string `json:"type"`
	Key     string `json:"key"`
	Fields  string `json:"fields"`
	ReadBy  string `json:"read_by"`
	Deletes string `json:"deletes,omitempty"`
}

func runKeys(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("keys", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var explicit keyList
	fs.Var(&explicit, "sdk-key", "an SDK key to show in full instead of the configured ones (repeatable)")
	asJSON := fs.Bool("json", false, "print JSON lines instead of a table")
	if err := fs.Parse(args); err != nil {
		return exitError{exitBadConfig}
	}
	cfg, err := config.Load(len(explicit) == 0)
	if err != nil {
		fmt.Fprintln(stderr, "populator:", err)
		return exitError{exitBadConfig}
	}
	sdkKeys, reveal := cfg.SDKKeys, false
	if len(explicit) > 0 {
		sdkKeys, reveal = explicit, true
	}
	var rows []keyRow
	for _, k := range sdkKeys {
		// Names built from the prefix schema hold 20 characters of the secret:
		// print them only for keys the user typed on this command line.
		hide := func(s string) string {
			if reveal {
				return s
			}
			return strings.ReplaceAll(s, keys.Prefix.ID(k), k.Redacted())
		}
		name := k.Redacted()
		if reveal {
			name = k.Reveal()
		}
		for _, v := range cfg.Versions {
			for _, t := range cfg.Layout.Targets(k, v) {
				r := keyRow{SDKKey: name, Version: string(v), Format: string(t.Format), Schema: string(t.Schema),
					Type: t.Type(), Key: hide(t.Key), Fields: hide(t.Fields()), ReadBy: t.ReadBy()}
				if sibling := t.BRSibling(); sibling != "" {
					r.Deletes = hide(sibling)
				}
				rows = append(rows, r)
			}
		}
		if cfg.IDLists {
			for _, s := range cfg.Layout.Schemas {
				f := cfg.Layout.Formats[0] // sfp or string: config accepts ID lists with one of them alone
				mt := keys.NewManifestTarget(cfg.Layout.Prefix, k, s).InFormat(f)
				lt := keys.NewIDListTarget(cfg.Layout.Prefix, k, s, "<name>")
				manifest := keyRow{SDKKey: name, Version: "id_lists", Format: string(f), Schema: string(s), Type: "HASH", Key: hide(mt.Key),
					Fields: `config = {"<name>": {"name","size","url","creationTime","fileID"}, …} (size = bytes stored), lcut (change marker), encoding = plain_text`,
					ReadBy: idListReaders(s, "manifest")}
				if f == keys.String {
					manifest.Type = "STRING"
					manifest.Fields = `value = {"<name>": {"name","size","url","creationTime","fileID"}, …} (size = bytes stored); change marker in ` + hide(mt.MarkerKey)
				}
				rows = append(rows, manifest,
					keyRow{SDKKey: name, Version: "id_lists", Format: string(f), Schema: string(s), Type: "STRING", Key: hide(lt.Key),
						Fields: "the list file, \"+id\\n\"/\"-id\\n\" lines, append-only for one fileID; companions " + hide(lt.FileIDKey) + " (its fileID) and " + hide(lt.StagingKey) + " (a replacement being downloaded)",
						ReadBy: idListReaders(s, "list")})
			}
		}
	}
	if *asJSON {
		enc := json.NewEncoder(stdout)
		for _, r := range rows {
			_ = enc.Encode(r)
		}
		return nil
	}
	for i, r := range rows {
		if i == 0 || rows[i-1].SDKKey != r.SDKKey {
			fmt.Fprintf(stdout, "\nSDK key %s\n", r.SDKKey)
		}
		fmt.Fprintf(stdout, "  %s %s/%s  %s %s\n      holds:   %s\n      read by: %s\n", r.Version, r.Format, r.Schema, r.Type, r.Key, r.Fields, r.ReadBy)
		if r.Deletes != "" {
			fmt.Fprintf(stdout, "      deletes: %s (statsig-br sibling, read first by server-core stores with getBytes)\n", r.Deletes)
		}
	}
	if !reveal {
		fmt.Fprintln(stdout, "\nKey names from the prefix schema hold part of the secret and are shown redacted; pass --sdk-key to print them in full.")
	}
	return nil
}

// idListReaders says who reads an ID-list key of schema s.
func idListReaders(s keys.Schema, what string) string {
	if s == keys.Hashed {
		if what == "manifest" {
			return "statsig-node 6 (the ID-list lookup); go-sdk and ruby-sdk adapters mapping statsig.id_lists here"
		}
		return "statsig-node 6 (id_list::<name>); go-sdk and ruby-sdk adapters mapping statsig.id_lists::<name> here"
	}
	return "adapters that use the prefix schema (forward-proxy style names)"
}

// checkRow is one line of `populator check`.
type checkRow struct {
	SDKKey     string        `json:"sdk_key"`
	Version    string        `json:"version"`
	Format     string        `json:"format"`
	Schema     string        `json:"schema"`
	Present    bool          `json:"present"`
	ValidJSON  bool          `json:"valid_json"`
	HasUpdates bool          `json:"has_updates"`
	Valid      string        `json:"valid"` // "ok" or why not
	Time       int64         `json:"time"`
	Lcut       int64         `json:"lcut"`
	LcutAge    time.Duration `json:"lcut_age_ns"`
	Size       int           `json:"size"`
	TTL        time.Duration `json:"ttl_ns"`
	Problem    string        `json:"problem,omitempty"`
}

func (r checkRow) ok() bool { return r.Problem == "" }

func runCheck(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("check", flag.ContinueOnError)
	fs.SetOutput(stderr)
	asJSON := fs.Bool("json", false, "print JSON lines instead of a table")
	if err := fs.Parse(args); err != nil {
		return exitError{exitBadConfig}
	}
	cfg, err := config.Load(true)
	if err != nil {
		fmt.Fprintln(stderr, "populator:", err)
		return exitError{exitBadConfig}
	}
	// go-redis logs dial failures and the like to stderr by itself, raw and
	// once per retry; route them into the worker's log (debug level), as run
	// does. check reports an unreachable Redis in one line of its own.
	redis.SetLogger(logging.RedisLogger(logging.New(stderr, cfg.LogLevel, cfg.LogFormat)))
	// check is one pass of idempotent reads that stops at the first failed
	// round trip; go-redis's default of 3 command retries, each after its own
	// round of dial attempts, would only delay that answer by seconds. Dial
	// attempts (several over ~0.5 s) still ride out a momentary refusal, and
	// max_retries in REDIS_URL still wins.
	if cfg.Redis.Tuning.MaxRetries == 0 {
		cfg.Redis.Tuning.MaxRetries = -1
	}
	rdb, target, err := connect(cfg, stderr)
	if err != nil {
		return err
	}
	defer rdb.Close()
	w := writer.New(rdb, 0)
	// A node-redis value is a zlib stream: inflate no more than the worker
	// would ever write, so a bomb in the HASH cannot exhaust memory.
	w.SetMaxPayload(cfg.MaxPayloadBytes)

	type item struct {
		k keys.SDKKey
		v keys.Version
		t keys.Target
	}
	var items []item
	for _, k := range cfg.SDKKeys {
		for _, v := range cfg.Versions {
			for _, t := range cfg.Layout.Targets(k, v) {
				items = append(items, item{k, v, t})
			}
		}
	}
	rows := make([]checkRow, 0, len(items))
	now := time.Now()
	// One pipelined round trip per chunk, and only one chunk's payloads in
	// memory at a time: each is judged, then dropped.
	for start := 0; start < len(items); start += writer.ReadChunk {
		chunk := items[start:min(start+writer.ReadChunk, len(items))]
		targets := make([]keys.Target, len(chunk))
		for i, it := range chunk {
			targets[i] = it.t
		}
		rctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		entries, err := w.ReadMany(rctx, targets)
		cancel()
		if err != nil {
			if ctx.Err() != nil {
				fmt.Fprintln(stderr, "populator: check interrupted")
				return exitError{exitFailure}
			}
			// Redis cannot be read: every further read would fail the same
			// way, after its own retries. Stop at once, and say so in a
			// way that cannot be mistaken for missing entries.
			fmt.Fprintf(stderr, "populator: Redis at %s cannot be read (%d of %d entries checked): %s\n",
				target, start, len(items), redactRedisSecrets(err.Error(), cfg.Redis.Password, cfg.Redis.SentinelPassword))
			return exitError{exitRedisUnavailable}
		}
		for i, it := range chunk {
			r := checkRow{SDKKey: it.k.Redacted(), Version: string(it.v), Format: string(it.t.Format), Schema: string(it.t.Schema)}
			e := entries[i]
			if e.Err != nil {
				// A *writer.TargetError: it names the target by version,
				// format and schema, never by its key name.
				r.Size, r.Lcut, r.TTL = e.Size, e.Lcut, e.TTL
				r.Problem = e.Err.Error()
				rows = append(rows, r)
				continue
			}
			inspectEntry(&r, e, it.v, it.k, now, cfg.MaxClockSkew)
			if r.ok() && e.Sibling {
				r.Problem = "a statsig-br sibling exists: server-core stores with getBytes read it instead"
			}
			rows = append(rows, r)
		}
	}
	if cfg.IDLists {
		idRows, err := checkIDLists(ctx, w, cfg.Layout.Prefix, cfg.Layout.Formats[0], cfg.SDKKeys, cfg.Layout.Schemas)
		if err != nil {
			fmt.Fprintf(stderr, "populator: Redis at %s cannot be read (ID lists): %s\n",
				target, redactRedisSecrets(err.Error(), cfg.Redis.Password, cfg.Redis.SentinelPassword))
			return exitError{exitRedisUnavailable}
		}
		rows = append(rows, idRows...)
	}
	failed := 0
	for _, r := range rows {
		if !r.ok() {
			failed++
		}
	}
	if *asJSON {
		enc := json.NewEncoder(stdout)
		for _, r := range rows {
			_ = enc.Encode(r)
		}
	} else {
		tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "SDK KEY\tVERSION\tFORMAT\tSCHEMA\tPRESENT\tJSON\tHAS_UPDATES\tTIME=LCUT\tLCUT AGE\tSIZE\tTTL\tPROBLEM")
		for _, r := range rows {
			age, ttl := "-", "none"
			if r.Lcut > 0 {
				age = r.LcutAge.Round(time.Second).String()
			}
			if r.TTL > 0 {
				ttl = r.TTL.Round(time.Second).String()
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%d\t%s\t%s\n", r.SDKKey, r.Version, r.Format, r.Schema,
				yes(r.Present), yes(r.ValidJSON), yes(r.HasUpdates), yes(r.Present && r.Time == r.Lcut), age, r.Size, ttl, r.Problem)
		}
		tw.Flush()
	}
	if failed > 0 {
		fmt.Fprintf(stderr, "%d of %d entries are missing or invalid\n", failed, len(rows))
		return exitError{exitFailure}
	}
	fmt.Fprintf(stderr, "all %d entries present and valid\n", len(rows))
	return nil
}

// redactRedisSecrets removes the Redis passwords from msg. No go-redis error
// is known to quote them, but the line goes to a terminal or a CI log, and
// making sure costs one replace.
func redactRedisSecrets(msg string, secrets ...string) string {
	for _, secret := range secrets {
		if secret != "" {
			msg = strings.ReplaceAll(msg, secret, "***")
		}
	}
	return msg
}

// inspectEntry fills r from what Redis holds, judging it as an SDK would,
// and as the worker's next write would: a stored lcut more than skew ahead of
// now makes every later write of a current payload a no-op.
func inspectEntry(r *checkRow, e writer.Entry, v keys.Version, k keys.SDKKey, now time.Time, skew time.Duration) {
	r.Size, r.Lcut, r.TTL = e.Size, e.Lcut, e.TTL
	if e.Lcut > 0 {
		r.LcutAge = now.Sub(time.UnixMilli(e.Lcut))
	}
	if e.Payload == nil {
		r.Problem = "missing"
		return
	}
	r.Present = true
	r.ValidJSON = json.Valid(e.Payload)
	meta, err := fetcher.Validate(e.Payload, v, k.HashedSDKKeyUsed())
	var ip *fetcher.InvalidPayloadError
	switch {
	case err == nil:
		r.HasUpdates, r.Valid, r.Time = true, "ok", meta.Time
	case errors.As(err, &ip) && ip.Reason == "no_update":
		r.Valid = "no_update"
		r.Problem = "holds a 'no updates' body, which SDKs read as an empty project"
	default:
		var top struct {
			HasUpdates bool `json:"has_updates"`
		}
		r.HasUpdates = r.ValidJSON && json.Unmarshal(e.Payload, &top) == nil && top.HasUpdates
		r.Valid = err.Error()
		r.Problem = err.Error()
	}
	// A future lcut pins the entry whatever the payload (the write scripts
	// compare lcuts only), so it outranks every other problem: it is the one
	// that keeps the worker from repairing the others.
	if p := futureProblem("lcut", e.Lcut, now, skew); p != "" {
		r.Problem = p
		return
	}
	if r.Problem != "" {
		return
	}
	if p := futureProblem("payload time", r.Time, now, skew); p != "" {
		r.Problem = p
		return
	}
	if r.Time != r.Lcut {
		r.Problem = fmt.Sprintf("payload time %d differs from stored lcut %d", r.Time, r.Lcut)
	}
}

// futureProblem says why ms (epoch milliseconds) lies more than skew ahead of
// now, or "" when it does not. The decision is fetcher.CheckTime's, the one
// that keeps such payloads from being written; how far ahead is worked out
// here with saturating arithmetic, as a stored lcut may be anything up to
// MaxInt64.
func futureProblem(what string, ms int64, now time.Time, skew time.Duration) string {
	if ms <= 0 || fetcher.CheckTime(ms, now, skew) == nil {
		return ""
	}
	return fmt.Sprintf("%s %d is %s in the future: it would pin the key; see README 'Recovering a key with a future lcut'",
		what, ms, aheadText(subSat(ms, now.UnixMilli())))
}

// subSat is a-b, clamped to the int64 range instead of wrapping.
func subSat(a, b int64) int64 {
	d := a - b
	if (b < 0 && d < a) || (b > 0 && d > a) { // the subtraction wrapped
		if b < 0 {
			return math.MaxInt64
		}
		return math.MinInt64
	}
	return d
}

// aheadText words a span of ms milliseconds the way an operator reads it:
// years, days, or a duration.
func aheadText(ms int64) string {
	const (
		day  = int64(24 * time.Hour / time.Millisecond)
		year = day * 36525 / 100 // a Julian year, as time.Duration has none
	)
	switch {
	case ms > math.MaxInt64-year/2: // rounding below would overflow
		return plural(ms/year, "year")
	case ms >= year:
		return plural((ms+year/2)/year, "year")
	case ms >= day:
		return plural((ms+day/2)/day, "day")
	}
	return (time.Duration(ms) * time.Millisecond).Round(time.Second).String()
}

func plural(n int64, unit string) string {
	if n == 1 {
		return "1 " + unit
	}
	return strconv.FormatInt(n, 10) + " " + unit + "s"
}

func yes(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}
