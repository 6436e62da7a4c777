// Command packagechart packages a Helm chart directory as NAME-VERSION.tgz, as `helm package`
// does, with Helm's own Go packages (the ones the chart tests use), so a release needs no helm
// binary. scripts/release.sh runs it:
//
//	go run ./cmd/packagechart -app-version 1.2.3 -out ../../dist ../statsig-populator
//
// It prints the path of the package it wrote.
package main

import (
	"flag"
	"fmt"
	"os"

	"helm.sh/helm/v3/pkg/chart/loader"
	"helm.sh/helm/v3/pkg/chartutil"
)

func main() {
	appVersion := flag.String("app-version", "", "set the chart's appVersion (the default image tag) instead of Chart.yaml's")
	out := flag.String("out", ".", "directory to write the package to")
	flag.Usage = func() {
		fmt.Fprintln(flag.CommandLine.Output(), "usage: packagechart [-app-version V] [-out DIR] CHART_DIR")
		flag.PrintDefaults()
	}
	flag.Parse()
	if flag.NArg() != 1 {
		flag.Usage()
		os.Exit(2)
	}
	path, err := packageChart(flag.Arg(0), *appVersion, *out)
	if err != nil {
		fmt.Fprintln(os.Stderr, "packagechart:", err)
		os.Exit(1)
	}
	fmt.Println(path)
}

// packageChart loads the chart directory (honouring its .helmignore, as helm package does),
// optionally stamps its appVersion, and writes the archive into outDir.
func packageChart(dir, appVersion, outDir string) (string, error) {
	ch, err := loader.LoadDir(dir)
	if err != nil {
		return "", fmt.Errorf("load %s: %w", dir, err)
	}
	if appVersion != "" {
		ch.Metadata.AppVersion = appVersion
	}
	// A chart with dependencies would need them vendored into charts/ first (helm dependency
	// build); this chart has none, and packaging one without them would ship a broken chart.
	if len(ch.Metadata.Dependencies) > 0 {
		return "", fmt.Errorf("%s has dependencies: packaging them is not supported", dir)
	}
	// Save validates the metadata (SemVer version, name) before writing anything.
	path, err := chartutil.Save(ch, outDir)
	if err != nil {
		return "", fmt.Errorf("save: %w", err)
	}
	return path, nil
}
