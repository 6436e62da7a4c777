// Package demo is what `populator demo` serves when no SDK key is given: sample
// Statsig projects (projects.json and the ID lists beside it, embedded in the
// binary, so a first run needs no key and no network) behind an embedded
// imitation of the CDN (internal/fakecdn on a free loopback port), one of
// them changing on a timer so that a user sees a change travel from the CDN
// through the worker into Redis.
//
// The payloads are fakecdn's own: the compatibility suite (compat/) proves
// that statsig-node 6.5.2 and @statsig/statsig-node-core evaluate them, and
// their odd_value_gate flips with every change.
package demo

import (
	"bytes"
	"context"
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/statsig-populator/statsig-populator/internal/fakecdn"
	"github.com/statsig-populator/statsig-populator/pkg/keys"
)

//go:embed projects.json idlists/*.txt
var files embed.FS

// The names the sample payloads define (fakecdn's), for the banner and tests.
const (
	// FlipGate is the gate that flips with every change of a project.
	FlipGate = fakecdn.GateOdd
	// PassGate and FailGate pass for everyone and for no one (v1 payloads).
	PassGate = fakecdn.GatePass
	FailGate = fakecdn.GateFail
	// PassGateV2 and FailGateV2 are the same in the v2 payloads.
	PassGateV2 = fakecdn.GatePassV2
	FailGateV2 = fakecdn.GateFailV2
	// ConfigName is a dynamic config whose ConfigField is the project's value.
	ConfigName  = fakecdn.ConfigName
	ConfigField = fakecdn.ConfigField
)

// Project is one sample project.
type Project struct {
	Name  string // short name: checkout, payments, search
	Title string
	Key   keys.SDKKey
	// Value is the project's value at start: populator_config.value, and
	// odd_value_gate passes when it is odd.
	Value int
	// LcutAge is how long before the start the payload was last changed.
	LcutAge time.Duration
	// Filler adds this many ~500-byte dynamic configs, for a payload of
	// some size.
	Filler int
	// Changes is set for the project that changes every ChangeEvery.
	Changes bool
	IDLists []IDList
}

// IDList is one sample ID list: its file as the CDN serves it ("+<hash>\n"
// lines) and the user IDs those hashes stand for.
type IDList struct {
	Name    string
	Content []byte
	Users   []string
}

type projectFile struct {
	Projects []struct {
		Name    string `json:"name"`
		Title   string `json:"title"`
		SDKKey  string `json:"sdk_key"`
		Value   int    `json:"value"`
		LcutAge string `json:"lcut_age"`
		Filler  int    `json:"filler"`
		Changes bool   `json:"changes"`
		IDLists []struct {
			Name  string   `json:"name"`
			File  string   `json:"file"`
			Users []string `json:"users"`
		} `json:"id_lists"`
	} `json:"projects"`
}

// Projects reads the embedded sample projects. An error means the embedded
// data is broken, which a test catches before any release.
func Projects() ([]Project, error) {
	raw, err := files.ReadFile("projects.json")
	if err != nil {
		return nil, err
	}
	var pf projectFile
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&struct {
		About string `json:"about"`
		*projectFile
	}{projectFile: &pf}); err != nil {
		return nil, fmt.Errorf("projects.json: %w", err)
	}
	var out []Project
	for _, p := range pf.Projects {
		k, err := keys.Parse(p.SDKKey)
		if err != nil {
			return nil, fmt.Errorf("projects.json: project %s: %w", p.Name, err)
		}
		age, err := time.ParseDuration(p.LcutAge)
		if err != nil || age < 0 {
			return nil, fmt.Errorf("projects.json: project %s: lcut_age %q is not a positive duration", p.Name, p.LcutAge)
		}
		pr := Project{Name: p.Name, Title: p.Title, Key: k, Value: p.Value, LcutAge: age, Filler: p.Filler, Changes: p.Changes}
		for _, l := range p.IDLists {
			content, err := files.ReadFile(l.File)
			if err != nil {
				return nil, fmt.Errorf("projects.json: project %s: %w", p.Name, err)
			}
			pr.IDLists = append(pr.IDLists, IDList{Name: l.Name, Content: content, Users: l.Users})
		}
		out = append(out, pr)
	}
	if len(out) == 0 {
		return nil, errors.New("projects.json: no project")
	}
	// The worker refuses two keys with the same 20-character prefix under
	// the prefix schema (on by default); so must the sample data.
	if msgs := keys.CheckSet(Keys(out), []keys.Schema{keys.Prefix}); len(msgs) > 0 {
		return nil, fmt.Errorf("projects.json: %s", msgs[0])
	}
	return out, nil
}

// Keys lists the projects' SDK keys, in order.
func Keys(ps []Project) []keys.SDKKey {
	out := make([]keys.SDKKey, len(ps))
	for i, p := range ps {
		out[i] = p.Key
	}
	return out
}

// Options configures StartCDN.
type Options struct {
	// ChangeEvery is how often the changing project changes; 0 never.
	ChangeEvery time.Duration
	// OnChange, when set, is called after each timed change with the
	// project and what the CDN now serves for it.
	OnChange func(p Project, now fakecdn.Project)
}

// CDN is the embedded imitation of the Statsig CDN, serving the sample
// projects on a loopback port.
type CDN struct {
	// URL is the base URL to give the worker (STATSIG_API_URL).
	URL      string
	Projects []Project

	fake *fakecdn.Server
	srv  *http.Server
	stop context.CancelFunc
	wg   sync.WaitGroup
}

// StartCDN serves the sample projects on 127.0.0.1 at a free port until
// Close.
func StartCDN(opt Options) (*CDN, error) {
	projects, err := Projects()
	if err != nil {
		return nil, err
	}
	fake := fakecdn.New()
	// The fake keeps a log of every request for tests' assertions; a demo
	// left running for days would grow it to its cap of 100,000 requests.
	fake.SetLogLimit(0)
	start := time.Now()
	for i, p := range projects {
		fake.SetProject(p.Key, fakecdn.Project{Lcut: start.Add(-p.LcutAge).UnixMilli(), Value: p.Value, Filler: p.Filler})
		for j, l := range p.IDLists {
			created := start.Add(-p.LcutAge).UnixMilli()
			fake.PutIDList(p.Key, l.Name, "demo-"+strconv.Itoa(i)+"-"+strconv.Itoa(j)+"-"+strconv.FormatInt(created, 10), created, l.Content)
		}
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("embedded CDN: %w", err)
	}
	ctx, stop := context.WithCancel(context.Background())
	c := &CDN{URL: "http://" + ln.Addr().String(), Projects: projects, fake: fake, stop: stop,
		srv: &http.Server{Handler: fake, ReadHeaderTimeout: 5 * time.Second}}
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		_ = c.srv.Serve(ln)
	}()
	if opt.ChangeEvery > 0 {
		c.wg.Add(1)
		go func() {
			defer c.wg.Done()
			c.changeLoop(ctx, opt)
		}()
	}
	return c, nil
}

func (c *CDN) changeLoop(ctx context.Context, opt Options) {
	tick := time.NewTicker(opt.ChangeEvery)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		for _, p := range c.Projects {
			if !p.Changes {
				continue
			}
			now := c.Change(p.Key)
			if opt.OnChange != nil {
				opt.OnChange(p, now)
			}
		}
	}
}

// Change makes a change to k's project, as a save in the Statsig console
// does: its value goes up by one (odd_value_gate flips) and its lcut moves to
// now (at least 1 ms on), so that the payload's time stays a real one. It
// returns what the CDN serves from then on.
func (c *CDN) Change(k keys.SDKKey) fakecdn.Project {
	step := time.Now().UnixMilli() - c.fake.Project(k).Lcut
	return c.fake.Change(k, max(step, 1))
}

// Current is what the CDN serves for k now.
func (c *CDN) Current(k keys.SDKKey) fakecdn.Project { return c.fake.Project(k) }

// Close stops the timer and the server.
func (c *CDN) Close() error {
	c.stop()
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	err := c.srv.Shutdown(ctx)
	if err != nil {
		// A request still running after a second (the worker was stopped
		// mid-poll and left its connection open): cut it.
		err = c.srv.Close()
	}
	c.wg.Wait()
	return err
}
