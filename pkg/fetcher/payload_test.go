package fetcher

import (
	"encoding/json"
	"errors"
	"testing"

	"github.com/statsig-populator/statsig-populator/internal/fakecdn"
	"github.com/statsig-populator/statsig-populator/pkg/keys"
)

var testKey = keys.MustParse("secret-abc123XYZ0123456789example") // djb2 645855033

const (
	v1Min = `{"has_updates":true,"time":1000,"feature_gates":[],"dynamic_configs":[],"layer_configs":[],"layers":{},"id_lists":{}}`
	v2Min = `{"has_updates":true,"time":1000,"checksum":"1234567890","feature_gates":{},"dynamic_configs":{},"layer_configs":{},"condition_map":{},"experiment_to_layer":{}}`
)

func TestValidate(t *testing.T) {
	hashed := testKey.HashedSDKKeyUsed()
	cases := []struct {
		name       string
		body       string
		v          keys.Version
		wantReason string // "" = valid
		wantTime   int64
		wantSum    string
	}{
		{"v1 minimal", v1Min, keys.V1, "", 1000, ""},
		{"v2 minimal", v2Min, keys.V2, "", 1000, "1234567890"},
		{"v1 with whitespace", " {\n \"has_updates\" : true ,\"time\":\t5,\"feature_gates\" : [ ] ,\"dynamic_configs\":[],\"layer_configs\":[]}\n", keys.V1, "", 5, ""},
		{"right hashed key", `{"hashed_sdk_key_used":"645855033","has_updates":true,"time":7,"feature_gates":[],"dynamic_configs":[],"layer_configs":[]}`, keys.V1, "", 7, ""},
		{"null hashed key counts as absent", `{"hashed_sdk_key_used":null,"has_updates":true,"time":7,"feature_gates":[],"dynamic_configs":[],"layer_configs":[]}`, keys.V1, "", 7, ""},
		{"escaped member name", `{"has\u005fupdates":true,"time":7,"feature_gates":[],"dynamic_configs":[],"layer_configs":[]}`, keys.V1, "", 7, ""},
		{"brackets inside strings", `{"x":"]}[{\"","has_updates":true,"time":7,"feature_gates":[{"name":"a}]"}],"dynamic_configs":[],"layer_configs":[]}`, keys.V1, "", 7, ""},
		{"last duplicate wins", `{"time":1,"has_updates":true,"time":9,"feature_gates":[],"dynamic_configs":[],"layer_configs":[]}`, keys.V1, "", 9, ""},

		{"no-update body", fakecdn.NoUpdateBody, keys.V1, "no_update", 0, ""},
		{"has_updates false with time", `{"has_updates":false,"time":5}`, keys.V2, "no_update", 0, ""},
		{"has_updates as string", `{"has_updates":"true","time":5}`, keys.V1, "no_update", 0, ""},
		{"empty", ``, keys.V1, "not_json", 0, ""},
		{"truncated", v1Min[:len(v1Min)/2], keys.V1, "not_json", 0, ""},
		{"trailing garbage", v1Min + "x", keys.V1, "not_json", 0, ""},
		{"array", `[1,2]`, keys.V1, "not_object", 0, ""},
		{"string", `"x"`, keys.V1, "not_object", 0, ""},
		{"no time", `{"has_updates":true,"feature_gates":[],"dynamic_configs":[],"layer_configs":[]}`, keys.V1, "bad_time", 0, ""},
		{"zero time", `{"has_updates":true,"time":0,"feature_gates":[],"dynamic_configs":[],"layer_configs":[]}`, keys.V1, "bad_time", 0, ""},
		{"negative time", `{"has_updates":true,"time":-5,"feature_gates":[],"dynamic_configs":[],"layer_configs":[]}`, keys.V1, "bad_time", 0, ""},
		{"fractional time", `{"has_updates":true,"time":1.5,"feature_gates":[],"dynamic_configs":[],"layer_configs":[]}`, keys.V1, "bad_time", 0, ""},
		{"exponent time", `{"has_updates":true,"time":1e12,"feature_gates":[],"dynamic_configs":[],"layer_configs":[]}`, keys.V1, "bad_time", 0, ""},
		{"string time", `{"has_updates":true,"time":"5","feature_gates":[],"dynamic_configs":[],"layer_configs":[]}`, keys.V1, "bad_time", 0, ""},
		{"huge time", `{"has_updates":true,"time":99999999999999999999,"feature_gates":[],"dynamic_configs":[],"layer_configs":[]}`, keys.V1, "bad_time", 0, ""},
		{"wrong hashed key", `{"hashed_sdk_key_used":"1","has_updates":true,"time":7,"feature_gates":[],"dynamic_configs":[],"layer_configs":[]}`, keys.V1, "wrong_sdk_key", 0, ""},
		{"numeric hashed key", `{"hashed_sdk_key_used":645855033,"has_updates":true,"time":7,"feature_gates":[],"dynamic_configs":[],"layer_configs":[]}`, keys.V1, "wrong_sdk_key", 0, ""},
		{"v2 body under v1", v2Min, keys.V1, "wrong_shape", 0, ""},
		{"v1 body under v2", v1Min, keys.V2, "wrong_shape", 0, ""},
		{"v1 missing layer_configs", `{"has_updates":true,"time":7,"feature_gates":[],"dynamic_configs":[]}`, keys.V1, "wrong_shape", 0, ""},
		{"v2 missing condition_map", `{"has_updates":true,"time":7,"feature_gates":{},"dynamic_configs":{},"layer_configs":{},"experiment_to_layer":{}}`, keys.V2, "wrong_shape", 0, ""},
		{"v1 null gates", `{"has_updates":true,"time":7,"feature_gates":null,"dynamic_configs":[],"layer_configs":[]}`, keys.V1, "wrong_shape", 0, ""},
		{"v2 response_format under v1", `{"response_format":"dcs-v2","has_updates":true,"time":7,"feature_gates":[],"dynamic_configs":[],"layer_configs":[]}`, keys.V1, "wrong_version", 0, ""},
		{"v1 response_format under v2", `{"response_format":"dcs-v1","has_updates":true,"time":7,"feature_gates":{},"dynamic_configs":{},"layer_configs":{},"condition_map":{},"experiment_to_layer":{}}`, keys.V2, "wrong_version", 0, ""},
		{"numeric checksum", `{"has_updates":true,"time":7,"checksum":5,"feature_gates":{},"dynamic_configs":{},"layer_configs":{},"condition_map":{},"experiment_to_layer":{}}`, keys.V2, "wrong_shape", 0, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			meta, err := Validate([]byte(c.body), c.v, hashed)
			if c.wantReason == "" {
				if err != nil {
					t.Fatalf("unexpected error: %v", err)
				}
				if meta.Time != c.wantTime || meta.Checksum != c.wantSum {
					t.Fatalf("meta = %+v, want time %d checksum %q", meta, c.wantTime, c.wantSum)
				}
				return
			}
			var ip *InvalidPayloadError
			if !errors.As(err, &ip) || ip.Reason != c.wantReason {
				t.Fatalf("error = %v, want reason %s", err, c.wantReason)
			}
		})
	}
}

// The bodies the fake CDN serves, including big ones, are valid for their own
// version and key only.
func TestValidateFakeBodies(t *testing.T) {
	other := keys.MustParse("secret-other-key")
	for _, filler := range []int{0, 100} {
		p := fakecdn.Project{Lcut: 1767920036437, Value: 3, Filler: filler}
		v1, v2 := fakecdn.V1Body(testKey, p), fakecdn.V2Body(testKey, p)
		if m, err := Validate(v1, keys.V1, testKey.HashedSDKKeyUsed()); err != nil || m.Time != p.Lcut {
			t.Errorf("v1 body (filler %d): %+v %v", filler, m, err)
		}
		if m, err := Validate(v2, keys.V2, testKey.HashedSDKKeyUsed()); err != nil || m.Time != p.Lcut || m.Checksum != "1767920036437" {
			t.Errorf("v2 body (filler %d): %+v %v", filler, m, err)
		}
		if _, err := Validate(v1, keys.V2, testKey.HashedSDKKeyUsed()); err == nil {
			t.Error("v1 body accepted as v2")
		}
		if _, err := Validate(v2, keys.V1, testKey.HashedSDKKeyUsed()); err == nil {
			t.Error("v2 body accepted as v1")
		}
		if _, err := Validate(v1, keys.V1, other.HashedSDKKeyUsed()); err == nil {
			t.Error("payload of one key accepted for another")
		}
	}
}

func FuzzValidate(f *testing.F) {
	for _, s := range []string{v1Min, v2Min, fakecdn.NoUpdateBody, `{"a":"\"}"}`, `{}`, `[]`, `{"time":1,"has_updates":true}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		for _, v := range []keys.Version{keys.V1, keys.V2} {
			meta, err := Validate(body, v, "645855033")
			if err != nil {
				continue
			}
			// Oracle: encoding/json must read the same facts from an accepted body.
			var doc map[string]any
			if json.Unmarshal(body, &doc) != nil {
				t.Fatalf("accepted a body encoding/json rejects: %q", body)
			}
			tm, _ := doc["time"].(float64)
			if doc["has_updates"] != true || meta.Time <= 0 || float64(meta.Time) != tm {
				t.Fatalf("accepted %q with time %d; encoding/json sees has_updates=%v time=%v", body, meta.Time, doc["has_updates"], doc["time"])
			}
			if h, ok := doc["hashed_sdk_key_used"]; ok && h != nil && h != "645855033" {
				t.Fatalf("accepted %q with hashed_sdk_key_used %v", body, h)
			}
			for name, kind := range shapeRules[v] {
				switch doc[name].(type) {
				case []any:
					if kind != '[' {
						t.Fatalf("accepted %q: %s is an array in a %s payload", body, name, v)
					}
				case map[string]any:
					if kind != '{' {
						t.Fatalf("accepted %q: %s is an object in a %s payload", body, name, v)
					}
				default:
					t.Fatalf("accepted %q without %s", body, name)
				}
			}
		}
	})
}
