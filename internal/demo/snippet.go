package demo

import (
	"encoding/json"
	"fmt"
	"strings"
)

// Snippet is a few lines of Node that start statsig-node 6 from the demo's
// Redis through the project's read-only adapter (compat/adapters/statsig-node.mjs,
// used as docs/adapters.md shows) and check a gate. `populator demo` prints it;
// the compat suite renders the same text and runs it against a running demo,
// so what a user is told to try is known to work.
type Snippet struct {
	RedisURL string // redis://127.0.0.1:6379
	// SDKKey is a JavaScript expression for the key: a sample key quoted by
	// JSString, or process.env.STATSIG_SERVER_SECRET for a real one, which
	// must never be printed.
	SDKKey string
	// Adapter is the import specifier of statsig-node.mjs.
	Adapter string
	// KeyPrefix is the worker's REDIS_KEY_PREFIX ("" for none).
	KeyPrefix string
	Gate      string
	// LocalMode keeps the SDK off the network: right for the sample keys,
	// which Statsig's servers do not know.
	LocalMode bool
}

// String is the program.
func (s Snippet) String() string {
	var b strings.Builder
	b.WriteString("import statsig from 'statsig-node';\n")
	b.WriteString("import Redis from 'ioredis';\n")
	fmt.Fprintf(&b, "import { ReadOnlyRedisAdapter } from %s;\n\n", JSString(s.Adapter))
	fmt.Fprintf(&b, "const redis = new Redis(%s);\n", JSString(s.RedisURL))
	fmt.Fprintf(&b, "await statsig.initialize(%s, {\n", s.SDKKey)
	if s.KeyPrefix != "" {
		fmt.Fprintf(&b, "  dataAdapter: new ReadOnlyRedisAdapter(redis, %s),\n", JSString(s.KeyPrefix))
	} else {
		b.WriteString("  dataAdapter: new ReadOnlyRedisAdapter(redis),\n")
	}
	if s.LocalMode {
		b.WriteString("  localMode: true, // a sample key: read Redis only, never Statsig's servers\n")
	}
	b.WriteString("});\n")
	fmt.Fprintf(&b, "console.log(%s, statsig.checkGate({ userID: 'a-user' }, %s));\n", JSString(s.Gate+":"), JSString(s.Gate))
	b.WriteString("await statsig.shutdownAsync();\n")
	b.WriteString("redis.disconnect();\n")
	return b.String()
}

// JSString quotes s as a JavaScript string literal: in single quotes, as
// the docs write them, when nothing in s needs escaping; as JSON otherwise.
func JSString(s string) string {
	if !strings.ContainsAny(s, `'\`) && !strings.ContainsFunc(s, func(r rune) bool { return r < ' ' || r == 0x2028 || r == 0x2029 }) {
		return "'" + s + "'"
	}
	b, _ := json.Marshal(s)
	return string(b)
}
