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
	"strings"
	"text/tabwriter"
	"time"

	"github.com/statsig-populator/statsig-populator/pkg/config"
	"github.com/statsig-populator/statsig-populator/pkg/fetcher"
	"github.com/statsig-populator/statsig-populator/pkg/keys"
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
	rdb, _, err := redisClient(cfg)
	if err != nil {
		fmt.Fprintln(stderr, "populator:", err)
		return exitError{exitBadConfig}
	}
	defer rdb.Close()
	w := writer.New(rdb, 0)

	var rows []checkRow
	now := time.Now()
	for _, k := range cfg.SDKKeys {
		for _, v := range cfg.Versions {
			for _, t := range cfg.Layout.Targets(k, v) {
				r := checkRow{SDKKey: k.Redacted(), Version: string(v), Format: string(t.Format), Schema: string(t.Schema)}
				rctx, cancel := context.WithTimeout(ctx, 30*time.Second)
				e, err := w.Read(rctx, t)
				var sibling int64
				if name := t.BRSibling(); err == nil && name != "" {
					sibling, err = rdb.Exists(rctx, name).Result()
				}
				cancel()
				if err != nil {
					r.Problem = "redis: " + err.Error()
					rows = append(rows, r)
					continue
				}
				inspectEntry(&r, e, v, k, now)
				if r.ok() && sibling > 0 {
					r.Problem = "a statsig-br sibling exists: server-core stores with getBytes read it instead"
				}
				rows = append(rows, r)
			}
		}
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

// inspectEntry fills r from what Redis holds, judging it as an SDK would.
func inspectEntry(r *checkRow, e writer.Entry, v keys.Version, k keys.SDKKey, now time.Time) {
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
		return
	default:
		var top struct {
			HasUpdates bool `json:"has_updates"`
		}
		r.HasUpdates = r.ValidJSON && json.Unmarshal(e.Payload, &top) == nil && top.HasUpdates
		r.Valid = err.Error()
		r.Problem = err.Error()
		return
	}
	if r.Time != r.Lcut {
		r.Problem = fmt.Sprintf("payload time %d differs from stored lcut %d", r.Time, r.Lcut)
	}
}

func yes(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}
