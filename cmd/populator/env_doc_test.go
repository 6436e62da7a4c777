package main

import (
	"os"
	"reflect"
	"regexp"
	"strings"
	"testing"

	"github.com/statsig-populator/statsig-populator/pkg/config"
)

// TestEnvMatchesREADME compares the variables of the README's configuration
// tables with the ones the program accepts (config.Env), both ways.
func TestEnvMatchesREADME(t *testing.T) {
	b, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	text := string(b)
	start, end := strings.Index(text, "## Configuration"), strings.Index(text, "## What is written to Redis")
	if start < 0 || end < start {
		t.Fatal("README has no Configuration section before 'What is written to Redis'")
	}
	documented := map[string]bool{}
	firstCell := regexp.MustCompile("(?m)^\\| ([^|]+) \\|")
	name := regexp.MustCompile("`([A-Z_]+)`")
	for _, cell := range firstCell.FindAllStringSubmatch(text[start:end], -1) {
		var last string
		for _, m := range name.FindAllStringSubmatch(cell[1], -1) {
			v := m[1]
			if v == "_FILE" { // "`REDIS_SENTINEL_PASSWORD` / `_FILE`"
				v = last + "_FILE"
			}
			documented[v], last = true, v
		}
	}
	accepted := map[string]bool{"GOMAXPROCS": true} // Go's own, defaulted by the worker
	typ := reflect.TypeOf(config.Env{})
	for i := range typ.NumField() {
		accepted[typ.Field(i).Tag.Get("envconfig")] = true
	}
	for v := range accepted {
		if !documented[v] {
			t.Errorf("%s is accepted but not in the README's configuration tables", v)
		}
	}
	for v := range documented {
		if !accepted[v] {
			t.Errorf("the README's configuration tables list %s, which the program does not read", v)
		}
	}
	if len(documented) < 30 {
		t.Fatalf("found only %d variables in the README: the tables were not parsed", len(documented))
	}
}
