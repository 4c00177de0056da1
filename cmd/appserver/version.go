package main

import (
	"fmt"
	"io"

	"github.com/prometheus/client_golang/prometheus"

	"roomengine/internal/version"
)

// runVersion prints the build: the version on the first line as the release was named
// (packages and scripts compare it as is), then the commit, the build date and the Go
// toolchain and platform.
func runVersion(out io.Writer) int {
	v := version.Get()
	fmt.Fprintf(out, "appserver %s\ncommit:   %s\nbuilt:    %s\ngo:       %s %s\n",
		v.Version, v.Commit, v.Date, v.GoVersion, v.Platform)
	return 0
}

// buildInfoGauge is roomengine_build_info: always 1, the build in its labels, so a
// dashboard can show which version each node runs (and spot a half-finished upgrade).
func buildInfoGauge(v version.Info) prometheus.Gauge {
	g := prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "roomengine_build_info",
		Help: "Always 1; the labels name the running build.",
		ConstLabels: prometheus.Labels{"version": v.Version, "commit": v.Commit, "date": v.Date,
			"goversion": v.GoVersion},
	})
	g.Set(1)
	return g
}
