package fetcher

import (
	"context"
	"errors"
	"go/ast"
	"go/parser"
	"go/token"
	"net/http"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/statsig-populator/statsig-populator/internal/fakecdn"
	"github.com/statsig-populator/statsig-populator/pkg/keys"
)

func TestLabel(t *testing.T) {
	cases := []struct {
		r    Result
		want string
	}{
		{Result{Outcome: Updated, Status: 200}, "updated"},
		{Result{Outcome: NoUpdate, Status: 200}, "no_update"},
		{Result{Outcome: Unauthorized, Status: 401, Class: "http_401"}, "unauthorized"},
		{Result{Outcome: Unauthorized, Status: 403, Class: "http_403"}, "unauthorized"},
		{Result{Outcome: RateLimited, Status: 429, Class: "http_429"}, "http_429"},
		{Result{Outcome: Transient, Status: 408, Class: "http_408"}, "http_408"},
		{Result{Outcome: Transient, Status: 500, Class: "http_500"}, "http_5xx"},
		{Result{Outcome: Rejected, Status: 501, Class: "http_501"}, "http_5xx"},
		{Result{Outcome: Transient, Status: 599, Class: "http_599"}, "http_5xx"},
		{Result{Outcome: Rejected, Status: 400, Class: "http_400"}, "http_4xx"},
		{Result{Outcome: Rejected, Status: 499, Class: "http_499"}, "http_4xx"},
		{Result{Outcome: Rejected, Status: 300, Class: "http_300"}, "http_3xx"},
		{Result{Outcome: Rejected, Status: 304, Class: "http_304"}, "http_3xx"},
		{Result{Outcome: Rejected, Status: 101, Class: "http_101"}, "http_other"},
		{Result{Outcome: Rejected, Status: 204, Class: "http_204"}, "http_other"},
		{Result{Outcome: Rejected, Status: 600, Class: "http_600"}, "http_other"},
		{Result{Outcome: Rejected, Status: 999, Class: "http_999"}, "http_other"},
		{Result{Outcome: Transient, Class: "timeout"}, "timeout"},
		{Result{Outcome: Transient, Class: "network"}, "network"},
		{Result{Outcome: Transient, Class: "canceled"}, "canceled"},
		{Result{Outcome: Rejected, Class: "bad_request"}, "network"},
		{Result{Outcome: Rejected, Status: 200, Class: "invalid_payload:wrong_shape"}, "invalid_payload"},
		{Result{Outcome: Rejected, Status: 200, Class: "invalid_payload:bad_encoding"}, "invalid_payload"},
		{Result{Outcome: Rejected, Status: 200, Class: "invalid_payload:future_time"}, "invalid_payload"},
		{Result{Outcome: Rejected, Status: 200, Class: "invalid_payload:no_update_unconditional"}, "no_update_unconditional"},
		{Result{Outcome: Rejected, Status: 200, Class: "unsupported_format"}, "unsupported_format"},
		{Result{Outcome: Rejected, Status: 200, Class: "too_large"}, "too_large"},
		{Result{Outcome: Transient, Status: 200, Class: "network"}, "network"},
		{Result{Outcome: Transient, Status: 200, Class: "timeout"}, "timeout"},
	}
	for _, c := range cases {
		if got := label(c.r); got != c.want {
			t.Errorf("label(%s/%s/%d) = %s, want %s", c.r.Outcome, c.r.Class, c.r.Status, got, c.want)
		}
		if !slices.Contains(Labels, c.want) {
			t.Errorf("%s is not in Labels", c.want)
		}
	}
}

// Every Result the client returns carries a label from Labels, and every
// member of Labels is something some answer produces (no documented label
// that is never emitted). Invalid payloads keep their reason for
// invalid_payloads_total, from InvalidReasons.
func TestEveryLabelOverHTTP(t *testing.T) {
	type answer struct {
		name    string
		since   int64
		serve   func(w http.ResponseWriter, r *http.Request)
		ctx     func() context.Context
		timeout time.Duration
		label   string
	}
	body := func(b string, hdr ...string) func(w http.ResponseWriter, r *http.Request) {
		return func(w http.ResponseWriter, r *http.Request) {
			for i := 0; i+1 < len(hdr); i += 2 {
				w.Header().Set(hdr[i], hdr[i+1])
			}
			_, _ = w.Write([]byte(b))
		}
	}
	status := func(st int) func(w http.ResponseWriter, r *http.Request) {
		return func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(st) }
	}
	full := string(fakecdn.V1Body(testKey, fakecdn.Project{Lcut: 5000, Value: 1}))
	answers := []answer{
		{name: "full", serve: body(full), label: "updated"},
		{name: "full, cache hit", serve: body(full, "X-Cache-Hit", "true"), label: "updated"},
		{name: "no update", since: 5000, serve: body(fakecdn.NoUpdateBody, "X-Cache-Hit", "true"), label: "no_update"},
		{name: "no update to an unconditional request", serve: body(fakecdn.NoUpdateBody), label: "no_update_unconditional"},
		{name: "not json", serve: body(`{"has_updates":tru`), label: "invalid_payload"},
		{name: "not an object", serve: body(`[1]`), label: "invalid_payload"},
		{name: "bad time", serve: body(`{"has_updates":true,"time":-1}`), label: "invalid_payload"},
		{name: "future time", serve: body(v1Body(ms(48 * time.Hour))), label: "invalid_payload"},
		{name: "wrong key", serve: body(`{"hashed_sdk_key_used":"1","has_updates":true,"time":7,"feature_gates":[],"dynamic_configs":[],"layer_configs":[]}`), label: "invalid_payload"},
		{name: "wrong version", serve: body(`{"response_format":"dcs-v2","has_updates":true,"time":7,"feature_gates":[],"dynamic_configs":[],"layer_configs":[]}`), label: "invalid_payload"},
		{name: "wrong shape", serve: body(v2Min), label: "invalid_payload"},
		{name: "bad encoding", serve: body("not gzip", "Content-Encoding", "gzip"), label: "invalid_payload"},
		{name: "protobuf", serve: body("\x00", "Content-Type", "application/octet-stream"), label: "unsupported_format"},
		{name: "brotli", serve: body("\x00", "Content-Encoding", "br"), label: "unsupported_format"},
		{name: "delta", serve: body(full, "X-Deltas-Used", "true"), label: "unsupported_format"},
		{name: "too large", serve: body(strings.Repeat(" ", 2<<20)), label: "too_large"},
		{name: "too large, announced", serve: body(strings.Repeat(" ", 2<<20), "Content-Length", strconv.Itoa(2<<20)), label: "too_large"},
		{name: "reset", serve: func(w http.ResponseWriter, r *http.Request) { panic(http.ErrAbortHandler) }, label: "network"},
		{name: "slow", serve: func(w http.ResponseWriter, r *http.Request) { <-r.Context().Done() }, timeout: 200 * time.Millisecond, label: "timeout"},
		{name: "canceled", serve: body(full), label: "canceled", ctx: func() context.Context {
			ctx, cancel := context.WithCancel(context.Background())
			cancel()
			return ctx
		}},
	}
	// Go's server sends 1xx as interim answers and its client skips them, so
	// no 1xx reaches a Result here; TestLabel covers them.
	for _, st := range []struct {
		code  int
		label string
	}{
		{204, "http_other"}, {206, "http_other"}, {299, "http_other"},
		{300, "http_3xx"}, {301, "http_3xx"}, {302, "http_3xx"}, {304, "http_3xx"}, {307, "http_3xx"}, {308, "http_3xx"},
		{400, "http_4xx"}, {401, "unauthorized"}, {403, "unauthorized"}, {404, "http_4xx"}, {405, "http_4xx"},
		{408, "http_408"}, {410, "http_4xx"}, {418, "http_4xx"}, {429, "http_429"}, {451, "http_4xx"}, {499, "http_4xx"},
		{500, "http_5xx"}, {501, "http_5xx"}, {502, "http_5xx"}, {503, "http_5xx"}, {504, "http_5xx"},
		{520, "http_5xx"}, {522, "http_5xx"}, {524, "http_5xx"}, {599, "http_5xx"},
		{600, "http_other"}, {799, "http_other"}, {999, "http_other"},
	} {
		answers = append(answers, answer{name: "status " + strconv.Itoa(st.code), serve: status(st.code), label: st.label})
	}

	seen := map[string]bool{}
	for _, a := range answers {
		t.Run(a.name, func(t *testing.T) {
			c := serve(t, Options{Timeout: a.timeout}, a.serve)
			ctx := context.Background()
			if a.ctx != nil {
				ctx = a.ctx()
			}
			r := c.Fetch(ctx, testKey, keys.V1, a.since)
			if r.Label != a.label {
				t.Fatalf("label %q (%s/%s, %v), want %q", r.Label, r.Outcome, r.Class, r.Err, a.label)
			}
			if !slices.Contains(Labels, r.Label) {
				t.Fatalf("label %q is not in Labels", r.Label)
			}
			seen[r.Label] = true
			var ip *InvalidPayloadError
			isInvalid := errors.As(r.Err, &ip)
			if isInvalid != strings.HasPrefix(r.Class, "invalid_payload:") {
				t.Fatalf("class %s, but the error %v (%T) says otherwise", r.Class, r.Err, r.Err)
			}
			if isInvalid && (!slices.Contains(InvalidReasons, ip.Reason) || r.Class != "invalid_payload:"+ip.Reason) {
				t.Fatalf("reason %q (class %s) is not in InvalidReasons", ip.Reason, r.Class)
			}
		})
	}
	for _, l := range Labels {
		if !seen[l] {
			t.Errorf("no answer produced the label %q", l)
		}
	}
}

// InvalidReasons lists exactly the reasons the package's code can produce:
// every literal passed to invalid() or set as an InvalidPayloadError Reason.
func TestInvalidReasonsComplete(t *testing.T) {
	files, err := filepath.Glob("*.go")
	if err != nil {
		t.Fatal(err)
	}
	found := map[string]bool{}
	fset := token.NewFileSet()
	for _, name := range files {
		if strings.HasSuffix(name, "_test.go") {
			continue
		}
		f, err := parser.ParseFile(fset, name, nil, 0)
		if err != nil {
			t.Fatal(err)
		}
		literal := func(e ast.Expr, what string) {
			lit, ok := e.(*ast.BasicLit)
			if !ok || lit.Kind != token.STRING {
				t.Errorf("%s: %s is not a string literal; this test cannot see its values", fset.Position(e.Pos()), what)
				return
			}
			s, _ := strconv.Unquote(lit.Value)
			found[s] = true
		}
		ast.Inspect(f, func(n ast.Node) bool {
			switch n := n.(type) {
			case *ast.FuncDecl:
				return n.Name.Name != "invalid" // its Reason is its parameter, seen at its calls
			case *ast.CallExpr:
				if id, ok := n.Fun.(*ast.Ident); ok && id.Name == "invalid" {
					literal(n.Args[0], "invalid's reason")
				}
			case *ast.CompositeLit:
				if id, ok := n.Type.(*ast.Ident); ok && id.Name == "InvalidPayloadError" {
					for _, el := range n.Elts {
						if kv, ok := el.(*ast.KeyValueExpr); ok && kv.Key.(*ast.Ident).Name == "Reason" {
							if _, copied := kv.Value.(*ast.SelectorExpr); copied {
								continue // ip.Reason, copied from an existing error
							}
							literal(kv.Value, "a Reason")
						}
					}
				}
			}
			return true
		})
	}
	if len(found) == 0 {
		t.Fatal("found no reasons at all")
	}
	for r := range found {
		if !slices.Contains(InvalidReasons, r) {
			t.Errorf("reason %q is produced but not in InvalidReasons", r)
		}
	}
	for _, r := range InvalidReasons {
		if !found[r] {
			t.Errorf("InvalidReasons lists %q, which nothing produces", r)
		}
	}
	for _, list := range [][]string{Labels, InvalidReasons} {
		if len(slices.Compact(slices.Sorted(slices.Values(list)))) != len(list) {
			t.Errorf("duplicates in %v", list)
		}
	}
}
