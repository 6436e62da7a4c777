package idlists

import (
	"encoding/json"
	"math"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestParseManifestFixtures(t *testing.T) {
	// go-sdk's manifest as shipped: its url is a placeholder, not an absolute
	// URL, so the entry is refused (and a stored list_1 would be kept).
	m, err := ParseManifest(fixture(t, "get_id_lists.json"), 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(m.Entries) != 0 || len(m.Refused) != 1 || m.Refused[0] != (Refusal{Name: "list_1", Reason: "bad_url", Detail: "url is not an absolute http or https URL"}) {
		t.Fatalf("placeholder url: %+v", m)
	}
	if !m.IsRefused("list_1") || m.IsRefused("list_2") {
		t.Fatal("IsRefused")
	}

	for _, c := range []struct {
		file, placeholder string
		want              Entry
	}{
		{"get_id_lists.json", "idliststorage.1", Entry{Name: "list_1", Size: 20, URL: "https://cdn.example/list_1", CreationTime: 0, FileID: "123"}},
		{"get_id_lists_updated.json", "idliststorage.1", Entry{Name: "list_1", Size: 30, URL: "https://cdn.example/list_1", CreationTime: 0, FileID: "123"}},
		{"core_get_id_lists.json", "URL_REPLACE/company_id_list", Entry{Name: "company_id_list", Size: 270, URL: "https://cdn.example/list_1", CreationTime: 1721417546000, FileID: "4t0BEqak3w1UcidsPcpQXN"}},
	} {
		body := strings.Replace(string(fixture(t, c.file)), c.placeholder, "https://cdn.example/list_1", 1)
		m, err := ParseManifest([]byte(body), 0)
		if err != nil {
			t.Fatal(err)
		}
		if len(m.Refused) != 0 || !reflect.DeepEqual(m.Entries, map[string]Entry{c.want.Name: c.want}) {
			t.Errorf("%s: %+v", c.file, m)
		}
	}
}

func TestParseManifestWhole(t *testing.T) {
	cases := []struct {
		body   string
		max    int64
		reason string
	}{
		{"", 0, "not_json"},
		{"   ", 0, "not_json"},
		{"{", 0, "not_json"},
		{`{"a":{}`, 0, "not_json"},
		{`{"a":1}x`, 0, "not_json"},
		{"<html><body>502 Bad Gateway</body></html>", 0, "not_json"},
		{"\xef\xbb\xbf{}", 0, "not_json"}, // a byte order mark
		{"{'a':1}", 0, "not_json"},
		{"[]", 0, "not_object"},
		{`["list_1"]`, 0, "not_object"},
		{"null", 0, "not_object"},
		{`"{}"`, 0, "not_object"},
		{"42", 0, "not_object"},
		{"true", 0, "not_object"},
		{`{"a":{}}`, 7, "too_large"},
		{strings.Repeat(" ", DefaultMaxManifestBytes) + "{}", 0, "too_large"},
	}
	for _, c := range cases {
		m, err := ParseManifest([]byte(c.body), c.max)
		me, ok := errorsAs[*ManifestError](err)
		if !ok || me.Reason != c.reason {
			t.Errorf("ParseManifest(%.40q) = %+v, %v; want reason %s", c.body, m, err, c.reason)
			continue
		}
		if !slices.Contains(ManifestReasons, me.Reason) {
			t.Errorf("reason %s not in ManifestReasons", me.Reason)
		}
	}
	for _, body := range []string{"{}", " {} ", "{}\n"} {
		m, err := ParseManifest([]byte(body), 2+2)
		if err != nil || len(m.Entries) != 0 || len(m.Refused) != 0 {
			t.Errorf("ParseManifest(%q) = %+v, %v", body, m, err)
		}
	}
}

// entry builds one manifest entry's JSON from a base with fields replaced
// (a value of "" removes the field).
func entry(over map[string]string) string {
	fields := [][2]string{
		{"name", `"l"`}, {"size", "20"}, {"url", `"https://cdn.example/v1/download_id_list_file/l"`},
		{"creationTime", "1721417546000"}, {"fileID", `"F1"`},
	}
	var b strings.Builder
	b.WriteByte('{')
	first := true
	for _, f := range fields {
		v := f[1]
		if o, ok := over[f[0]]; ok {
			v = o
		}
		if v == "" {
			continue
		}
		if !first {
			b.WriteByte(',')
		}
		first = false
		b.WriteString(`"` + f[0] + `":` + v)
	}
	for k, v := range over {
		if !slices.Contains([]string{"name", "size", "url", "creationTime", "fileID"}, k) {
			b.WriteString(`,"` + k + `":` + v)
		}
	}
	b.WriteByte('}')
	return b.String()
}

func TestParseManifestEntries(t *testing.T) {
	long := strings.Repeat("a", MaxNameLen)
	cases := []struct {
		name   string // the key, as JSON
		entry  string
		reason string // "" = accepted
	}{
		{`"l"`, entry(nil), ""},
		{`"list_1"`, entry(map[string]string{"name": ""}), ""}, // no name member: the key is the name (go-sdk)
		{`"Company-ID.list_2"`, entry(map[string]string{"name": `"Company-ID.list_2"`}), ""},
		{`"` + long + `"`, entry(map[string]string{"name": ""}), ""},
		{`"l"`, entry(map[string]string{"extra": `{"nested":[1,2]}`}), ""}, // unknown members are ignored
		{`"l"`, entry(map[string]string{"size": "0", "creationTime": "0"}), ""},
		{`"l"`, entry(map[string]string{"size": "9007199254740991", "creationTime": "9007199254740991"}), ""},
		{`"l"`, entry(map[string]string{"url": `"http://127.0.0.1:8080/x?sv=1&sig=abc%2F"`}), ""},
		{`"l"`, entry(map[string]string{"url": `"HTTPS://CDN.example/x"`}), ""},
		{`"l"`, entry(map[string]string{"fileID": `"ü-4t0BEqak3w1UcidsPcpQXN"`}), ""},

		// names that could break a Redis key name or a URL
		{`""`, entry(map[string]string{"name": ""}), "bad_name"},
		{`"a|b"`, entry(map[string]string{"name": ""}), "bad_name"},
		{`"a:b"`, entry(map[string]string{"name": ""}), "bad_name"},
		{`"a::b"`, entry(map[string]string{"name": ""}), "bad_name"},
		{`"{tag}"`, entry(map[string]string{"name": ""}), "bad_name"},
		{`"a b"`, entry(map[string]string{"name": ""}), "bad_name"},
		{`"a/b"`, entry(map[string]string{"name": ""}), "bad_name"},
		{`"../x"`, entry(map[string]string{"name": ""}), "bad_name"},
		{`".."`, entry(map[string]string{"name": ""}), "bad_name"},
		{`"."`, entry(map[string]string{"name": ""}), "bad_name"},
		{`".hidden"`, entry(map[string]string{"name": ""}), "bad_name"},
		{`"a%2Fb"`, entry(map[string]string{"name": ""}), "bad_name"},
		{`"a?b"`, entry(map[string]string{"name": ""}), "bad_name"},
		{`"a#b"`, entry(map[string]string{"name": ""}), "bad_name"},
		{`"a*"`, entry(map[string]string{"name": ""}), "bad_name"},
		{`"a\nb"`, entry(map[string]string{"name": ""}), "bad_name"},
		{`"a\u0000b"`, entry(map[string]string{"name": ""}), "bad_name"},
		{`"liste_é"`, entry(map[string]string{"name": ""}), "bad_name"},
		{`"` + long + `a"`, entry(map[string]string{"name": ""}), "bad_name"},
		{`"l"`, entry(map[string]string{"name": `"other"`}), "name_mismatch"},
		{`"l"`, entry(map[string]string{"name": `null`}), "name_mismatch"},
		{`"l"`, entry(map[string]string{"name": `7`}), "name_mismatch"},

		{`"l"`, `[]`, "not_object"},
		{`"l"`, `null`, "not_object"},
		{`"l"`, `"https://cdn.example/l"`, "not_object"},
		{`"l"`, `true`, "not_object"},

		{`"l"`, entry(map[string]string{"url": ""}), "bad_url"},
		{`"l"`, entry(map[string]string{"url": `""`}), "bad_url"},
		{`"l"`, entry(map[string]string{"url": `null`}), "bad_url"},
		{`"l"`, entry(map[string]string{"url": `7`}), "bad_url"},
		{`"l"`, entry(map[string]string{"url": `"idliststorage.1"`}), "bad_url"},
		{`"l"`, entry(map[string]string{"url": `"/v1/download_id_list_file/l"`}), "bad_url"},
		{`"l"`, entry(map[string]string{"url": `"//cdn.example/l"`}), "bad_url"},
		{`"l"`, entry(map[string]string{"url": `"ftp://cdn.example/l"`}), "bad_url"},
		{`"l"`, entry(map[string]string{"url": `"file:///etc/passwd"`}), "bad_url"},
		{`"l"`, entry(map[string]string{"url": `"javascript:alert(1)"`}), "bad_url"},
		{`"l"`, entry(map[string]string{"url": `"https:cdn.example/l"`}), "bad_url"},
		{`"l"`, entry(map[string]string{"url": `"https://"`}), "bad_url"},
		{`"l"`, entry(map[string]string{"url": `"https://:443/l"`}), "bad_url"},
		{`"l"`, entry(map[string]string{"url": `"https://user:pw@cdn.example/l"`}), "bad_url"},
		{`"l"`, entry(map[string]string{"url": `"https://cdn.example:99999/l"`}), "bad_url"},
		{`"l"`, entry(map[string]string{"url": `"https://cdn.example:0/l"`}), "bad_url"},
		{`"l"`, entry(map[string]string{"url": `"https://cdn.example/l\u0000"`}), "bad_url"},
		{`"l"`, entry(map[string]string{"url": `"https://cdn.ex ample/l"`}), "bad_url"},
		{`"l"`, entry(map[string]string{"url": `"https://cdn.example/` + strings.Repeat("x", MaxURLLen) + `"`}), "bad_url"},

		{`"l"`, entry(map[string]string{"fileID": ""}), "bad_file_id"},
		{`"l"`, entry(map[string]string{"fileID": `""`}), "bad_file_id"},
		{`"l"`, entry(map[string]string{"fileID": `123`}), "bad_file_id"},
		{`"l"`, entry(map[string]string{"fileID": `null`}), "bad_file_id"},
		{`"l"`, entry(map[string]string{"fileID": `"a\u0001b"`}), "bad_file_id"},
		{`"l"`, entry(map[string]string{"fileID": `"a\nb"`}), "bad_file_id"},
		{`"l"`, entry(map[string]string{"fileID": `"a\u0085b"`}), "bad_file_id"},
		{`"l"`, entry(map[string]string{"fileID": `"` + strings.Repeat("f", MaxFileIDLen+1) + `"`}), "bad_file_id"},

		{`"l"`, entry(map[string]string{"size": ""}), "bad_size"},
		{`"l"`, entry(map[string]string{"size": "-1"}), "bad_size"},
		{`"l"`, entry(map[string]string{"size": "-0"}), "bad_size"},
		{`"l"`, entry(map[string]string{"size": "20.0"}), "bad_size"},
		{`"l"`, entry(map[string]string{"size": "2e1"}), "bad_size"},
		{`"l"`, entry(map[string]string{"size": `"20"`}), "bad_size"},
		{`"l"`, entry(map[string]string{"size": "null"}), "bad_size"},
		{`"l"`, entry(map[string]string{"size": "true"}), "bad_size"},
		{`"l"`, entry(map[string]string{"size": "9007199254740992"}), "bad_size"}, // 2^53
		{`"l"`, entry(map[string]string{"size": "9223372036854775807"}), "bad_size"},
		{`"l"`, entry(map[string]string{"size": "9223372036854775808"}), "bad_size"},
		{`"l"`, entry(map[string]string{"size": "99999999999999999999999999999"}), "bad_size"},
		{`"l"`, entry(map[string]string{"size": "-9223372036854775808"}), "bad_size"},
		{`"l"`, entry(map[string]string{"size": "", "SIZE": "20"}), "bad_size"}, // members match exactly

		{`"l"`, entry(map[string]string{"creationTime": ""}), "bad_creation_time"},
		{`"l"`, entry(map[string]string{"creationTime": "-1"}), "bad_creation_time"},
		{`"l"`, entry(map[string]string{"creationTime": "1721417546000.5"}), "bad_creation_time"},
		{`"l"`, entry(map[string]string{"creationTime": "1.7e12"}), "bad_creation_time"},
		{`"l"`, entry(map[string]string{"creationTime": `"1721417546000"`}), "bad_creation_time"},
		{`"l"`, entry(map[string]string{"creationTime": "99999999999999999999"}), "bad_creation_time"},
	}
	for _, c := range cases {
		body := `{` + c.name + `:` + c.entry + `,"good":` + entry(map[string]string{"name": `"good"`}) + `}`
		m, err := ParseManifest([]byte(body), 0)
		if err != nil {
			t.Errorf("%s: whole manifest refused: %v", body, err)
			continue
		}
		if _, ok := m.Entries["good"]; !ok {
			t.Errorf("%s: the good entry was lost: %+v", body, m)
		}
		var name string
		_ = json.Unmarshal([]byte(c.name), &name)
		if c.reason == "" {
			if _, ok := m.Entries[name]; !ok || len(m.Refused) != 0 {
				t.Errorf("%.200s: not accepted: %+v", body, m)
			}
			continue
		}
		if len(m.Entries) != 1 || len(m.Refused) != 1 || m.Refused[0].Reason != c.reason {
			t.Errorf("%.200s: got %+v, want one refusal %s", body, m, c.reason)
			continue
		}
		r := m.Refused[0]
		if len(r.Name) > MaxNameLen || (len(name) <= MaxNameLen && r.Name != name) {
			t.Errorf("refusal name %q for %q", r.Name, name)
		}
		if strings.Contains(r.Detail, "cdn.example") || strings.Contains(r.Detail, "127.0.0.1") {
			t.Errorf("refusal detail quotes the url: %q", r.Detail)
		}
		if !slices.Contains(EntryReasons, r.Reason) {
			t.Errorf("reason %s not in EntryReasons", r.Reason)
		}
	}
}

func TestParseManifestDuplicates(t *testing.T) {
	body := `{"a":` + entry(map[string]string{"name": `"a"`}) + `,"b":` + entry(map[string]string{"name": `"b"`}) +
		`,"a":` + entry(map[string]string{"name": `"a"`, "size": "99"}) + `,"\u0062":` + entry(map[string]string{"name": `"b"`}) + `,"c":` + entry(map[string]string{"name": `"c"`}) + `}`
	m, err := ParseManifest([]byte(body), 0)
	if err != nil {
		t.Fatal(err)
	}
	if got := m.Names(); !slices.Equal(got, []string{"c"}) {
		t.Errorf("entries %v, want [c]", got)
	}
	want := []Refusal{{"a", "duplicate_name", "the manifest lists this name more than once"}, {"b", "duplicate_name", "the manifest lists this name more than once"}}
	if !reflect.DeepEqual(m.Refused, want) {
		t.Errorf("refused %+v", m.Refused)
	}
}

func TestScreen(t *testing.T) {
	now := testNow
	nowMs := now.UnixMilli()
	m := Manifest{Entries: map[string]Entry{
		"small":  {Name: "small", Size: 100, CreationTime: nowMs},
		"cap":    {Name: "cap", Size: 1000, CreationTime: nowMs + time.Hour.Milliseconds()}, // exactly at both limits
		"big":    {Name: "big", Size: 1001},
		"future": {Name: "future", Size: 1, CreationTime: nowMs + time.Hour.Milliseconds() + 1},
		"far":    {Name: "far", Size: 1, CreationTime: maxSafeInteger},
	}, Refused: []Refusal{{Name: "zzz", Reason: "bad_url"}}}
	s := m.Screen(Limits{MaxListBytes: 1000, Now: now, MaxClockSkew: time.Hour})
	if got := s.Names(); !slices.Equal(got, []string{"cap", "small"}) {
		t.Errorf("kept %v", got)
	}
	var reasons []string
	for _, r := range s.Refused {
		reasons = append(reasons, r.Name+":"+r.Reason)
	}
	if want := []string{"big:too_large", "far:future_creation_time", "future:future_creation_time", "zzz:bad_url"}; !slices.Equal(reasons, want) {
		t.Errorf("refused %v, want %v", reasons, want)
	}
	if len(m.Entries) != 5 || len(m.Refused) != 1 {
		t.Error("Screen changed its receiver")
	}

	// A clock at the end of time cannot overflow into refusing, nor a huge
	// skew into accepting everything wrongly.
	end := time.UnixMilli(math.MaxInt64)
	if s := m.Screen(Limits{Now: end, MaxClockSkew: time.Duration(math.MaxInt64)}); len(s.Entries) != 5 {
		t.Errorf("clock at the end of time: %+v", s)
	}
	// No clock, no cap: nothing more is refused.
	if s := m.Screen(Limits{}); len(s.Entries) != 5 {
		t.Errorf("no limits: %+v", s)
	}
	// Default skew is an hour.
	if s := m.Screen(Limits{Now: now}); !slices.Equal(s.Names(), []string{"big", "cap", "small"}) {
		t.Errorf("default skew: %v", s.Names())
	}
}

func TestValidName(t *testing.T) {
	for _, n := range []string{"a", "list_1", "A-b.c_9", "9", "_x", "-x", strings.Repeat("z", MaxNameLen)} {
		if !ValidName(n) {
			t.Errorf("ValidName(%q) = false", n)
		}
	}
	for _, n := range []string{"", ".", "..", ".a", "a|b", "a:b", "a{b}", "a b", "a\tb", "a/b", "a\\b", "é", "a\x00", strings.Repeat("z", MaxNameLen+1)} {
		if ValidName(n) {
			t.Errorf("ValidName(%q) = true", n)
		}
	}
}

func TestMarshalManifest(t *testing.T) {
	entries := []Entry{
		{Name: "list_2", Size: 30, URL: "https://cdn.example/b?sv=1&sig=a<b>", CreationTime: 5, FileID: `F"2`},
		{Name: "list_1", Size: 20, URL: "https://cdn.example/a", CreationTime: 0, FileID: "123"},
	}
	b := MarshalManifest(entries)
	want := `{"list_1":{"name":"list_1","size":20,"url":"https://cdn.example/a","creationTime":0,"fileID":"123"},` +
		`"list_2":{"name":"list_2","size":30,"url":"https://cdn.example/b?sv=1\u0026sig=a\u003cb\u003e","creationTime":5,"fileID":"F\"2"}}`
	if string(b) != want {
		t.Errorf("got  %s\nwant %s", b, want)
	}
	m, err := ParseManifest(b, 0)
	if err != nil || len(m.Refused) != 0 || m.Entries["list_1"] != entries[1] || m.Entries["list_2"] != entries[0] {
		t.Errorf("round trip: %+v, %v", m, err)
	}
	// go-sdk's reader: json.Unmarshal into map[string]struct with these tags.
	var goSDK map[string]struct {
		Name         string `json:"name"`
		Size         int64  `json:"size"`
		CreationTime int64  `json:"creationTime"`
		URL          string `json:"url"`
		FileID       string `json:"fileID"`
	}
	if err := json.Unmarshal(b, &goSDK); err != nil || goSDK["list_2"].URL != entries[0].URL || goSDK["list_1"].Size != 20 {
		t.Errorf("go-sdk reads %+v, %v", goSDK, err)
	}
	if string(MarshalManifest(nil)) != "{}" {
		t.Error("empty manifest")
	}
}

// FuzzParseManifest: no input panics, every refusal has a listed reason, every
// accepted entry passes the checks again.
func FuzzParseManifest(f *testing.F) {
	f.Add([]byte(`{"l":` + entry(nil) + `}`))
	f.Add([]byte(`{"a|b":{},"l":[],"m":null}`))
	f.Add([]byte(`[]`))
	f.Add([]byte(`{"l":{"size":1e400}}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		m, err := ParseManifest(body, 1<<16)
		if err != nil {
			if me, ok := errorsAs[*ManifestError](err); !ok || !slices.Contains(ManifestReasons, me.Reason) {
				t.Fatalf("error %v", err)
			}
			return
		}
		for name, e := range m.Entries {
			if !ValidName(name) || e.Name != name || checkURL(e.URL) != "" || e.FileID == "" || e.Size < 0 || e.Size > maxSafeInteger || e.CreationTime < 0 || e.CreationTime > maxSafeInteger {
				t.Fatalf("accepted %q: %+v", name, e)
			}
		}
		for _, r := range m.Refused {
			if !slices.Contains(EntryReasons, r.Reason) || len(r.Name) > MaxNameLen {
				t.Fatalf("refusal %+v", r)
			}
		}
	})
}
