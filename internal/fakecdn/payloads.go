package fakecdn

import (
	"fmt"
	"strings"

	"github.com/statsig-populator/statsig-populator/pkg/keys"
)

// Project is the state of one SDK key's Statsig project as the fake serves it.
// Lcut is the payloads' time; Value is the number inside the dynamic config
// "populator_config" (and the name of a gate that turns on when it is odd), so
// tests can see a change travel from the CDN through Redis to an SDK.
type Project struct {
	Lcut  int64
	Value int
	// Filler adds this many extra dynamic configs of about 500 bytes each,
	// to make payloads of realistic structure and any size.
	Filler int
	// OmitHashedKey leaves out hashed_sdk_key_used (real payloads carry it).
	OmitHashedKey bool
}

// Gate and config names the payloads define; the compatibility tests assert
// them through the real SDKs.
const (
	GatePass    = "always_on_gate"   // v1: public rule at 100 %
	GateFail    = "always_off_gate"  // v1: public rule at 0 %
	GatePassV2  = "test_public"      // v2: public rule at 100 %
	GateFailV2  = "test_off"         // v2: public rule at 0 %
	GateOdd     = "odd_value_gate"   // passes when Value is odd
	ConfigName  = "populator_config" // {"value": Value, "label": "value-<Value>"}
	ConfigField = "value"
)

// V1Body is a complete v1 (legacy SDK) payload for key k in project p.
func V1Body(k keys.SDKKey, p Project) []byte {
	var b strings.Builder
	b.Grow(2048 + p.Filler*520)
	fmt.Fprintf(&b, `{"has_updates":true,"time":%d,"response_format":"dcs-v1",`, p.Lcut)
	if !p.OmitHashedKey {
		fmt.Fprintf(&b, `"hashed_sdk_key_used":%q,`, k.HashedSDKKeyUsed())
	}
	b.WriteString(`"feature_gates":[`)
	b.WriteString(v1Gate(GatePass, 100, "14862979-1468-4e49-9b2a-c8bb100eed8f"))
	b.WriteString(",")
	b.WriteString(v1Gate(GateFail, 0, "24862979-1468-4e49-9b2a-c8bb100eed8f"))
	b.WriteString(",")
	b.WriteString(v1Gate(GateOdd, 100*(p.Value%2), "34862979-1468-4e49-9b2a-c8bb100eed8f"))
	b.WriteString(`],"dynamic_configs":[`)
	fmt.Fprintf(&b, `{"name":%q,"type":"dynamic_config","salt":"9b0d3f1e-7c4e-4f0e-9a43-1f2b2f1d0c11","enabled":true,"defaultValue":{%q:%d,"label":"value-%d"},"rules":[],"idType":"userID","entity":"dynamic_config"}`,
		ConfigName, ConfigField, p.Value, p.Value)
	for i := 0; i < p.Filler; i++ {
		fmt.Fprintf(&b, `,{"name":"filler_config_%d","type":"dynamic_config","salt":"%08d-0000-4000-8000-000000000000","enabled":true,"defaultValue":{"text":"%s","n":%d},"rules":[],"idType":"userID","entity":"dynamic_config"}`,
			i, i, fillerText, i)
	}
	b.WriteString(`],"layer_configs":[],"layers":{},"id_lists":{}}`)
	return []byte(b.String())
}

func v1Gate(name string, pass int, salt string) string {
	return fmt.Sprintf(`{"name":%q,"type":"feature_gate","salt":"47403b4e-7829-43d1-b1ac-3992a5c1b4ac","enabled":true,"defaultValue":false,`+
		`"rules":[{"name":"6N6Z8ODekNYZ7F8gFdoLP5","groupName":"everyone","passPercentage":%d,"returnValue":true,"id":"6N6Z8ODekNYZ7F8gFdoLP5",`+
		`"salt":%q,"conditions":[{"type":"public","targetValue":null,"operator":null,"field":null,"additionalValues":{}}]}],"idType":"userID","entity":"feature_gate"}`,
		name, pass, salt)
}

// V2Body is a complete v2 (server-core SDK) payload for key k in project p.
// Its checksum changes with the lcut, as server-core requires.
func V2Body(k keys.SDKKey, p Project) []byte {
	var b strings.Builder
	b.Grow(2048 + p.Filler*520)
	fmt.Fprintf(&b, `{"has_updates":true,"time":%d,"checksum":"%d","response_format":"dcs-v2",`, p.Lcut, p.Lcut)
	if !p.OmitHashedKey {
		fmt.Fprintf(&b, `"hashed_sdk_key_used":%q,`, k.HashedSDKKeyUsed())
	}
	b.WriteString(`"feature_gates":{`)
	b.WriteString(v2Gate(GatePassV2, 100, "1828919350"))
	b.WriteString(",")
	b.WriteString(v2Gate(GateFailV2, 0, "1828919350"))
	b.WriteString(",")
	b.WriteString(v2Gate(GateOdd, 100*(p.Value%2), "1828919350"))
	b.WriteString(`},"dynamic_configs":{`)
	fmt.Fprintf(&b, `%q:{"type":"dynamic_config","salt":"9b0d3f1e-7c4e-4f0e-9a43-1f2b2f1d0c11","enabled":true,"defaultValue":{%q:%d,"label":"value-%d"},"rules":[],"idType":"userID","entity":"dynamic_config","version":1}`,
		ConfigName, ConfigField, p.Value, p.Value)
	for i := 0; i < p.Filler; i++ {
		fmt.Fprintf(&b, `,"filler_config_%d":{"type":"dynamic_config","salt":"%08d-0000-4000-8000-000000000000","enabled":true,"defaultValue":{"text":"%s","n":%d},"rules":[],"idType":"userID","entity":"dynamic_config","version":1}`,
			i, i, fillerText, i)
	}
	b.WriteString(`},"layer_configs":{},"experiment_to_layer":{},`)
	b.WriteString(`"condition_map":{"1828919350":{"type":"public","targetValue":null,"operator":null,"field":null,"additionalValues":{},"idType":"userID"}}}`)
	return []byte(b.String())
}

func v2Gate(name string, pass int, condition string) string {
	return fmt.Sprintf(`%q:{"type":"feature_gate","salt":"1e85dcdc-af1a-484b-bb3b-b2e04fb4e658","enabled":true,"defaultValue":false,`+
		`"idType":"userID","entity":"feature_gate","version":8,"rules":[{"name":"QeYZ08QOGRmYrbQ403533:%d.00:4","passPercentage":%d,`+
		`"conditions":[%q],"returnValue":true,"id":"QeYZ08QOGRmYrbQ403533:%d.00:4","salt":"d6af3e40-78ce-4110-a4d9-3bcbfc7a341c","idType":"userID"}]}`,
		name, pass, pass, condition, pass)
}

// fillerText is 400 characters of config text, escapes included, so that
// validation meets strings it has to scan rather than skip.
var fillerText = strings.Repeat(`lorem \"ipsum\" dolor sit amet, `, 12) + `caf\u00e9 \n`

// NoUpdateBody is the CDN's literal "nothing newer" answer.
const NoUpdateBody = `{"has_updates":false}`
