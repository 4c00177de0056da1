package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"net"
	nethttp "net/http"
	"strconv"
	"strings"
	"time"

	"roomengine/config"
)

// runHealthcheck asks this machine's server whether it is ready and exits 0 when it answers
// 2xx, 1 otherwise. Container images built on scratch have no shell or curl, so a compose or
// orchestrator health check runs the binary itself. By default it reads the same
// configuration as the server (-config, APPSERVER_CONFIG, APPSERVER_*) to find the port, and
// asks GET /readyz there; -url overrides.
func runHealthcheck(args, environ []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("appserver healthcheck", flag.ContinueOnError)
	fs.SetOutput(stderr)
	configPath := fs.String("config", envValue(environ, config.EnvConfigFile), "YAML configuration file (optional)")
	url := fs.String("url", "", "URL to GET (default: /readyz on the configured port of this machine)")
	timeout := fs.Duration("timeout", 3*time.Second, "how long to wait for the answer")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if *url == "" {
		cfg, err := config.Load(*configPath, environ)
		if err != nil {
			fmt.Fprintln(stderr, err)
			return 2
		}
		*url = "http://" + net.JoinHostPort(localHost(cfg.IP), strconv.Itoa(cfg.Port)) + "/readyz"
	}
	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()
	req, err := nethttp.NewRequestWithContext(ctx, nethttp.MethodGet, *url, nil)
	if err != nil {
		fmt.Fprintln(stderr, "healthcheck:", err)
		return 2
	}
	resp, err := nethttp.DefaultClient.Do(req)
	if err != nil {
		fmt.Fprintln(stderr, "healthcheck:", err)
		return 1
	}
	_ = resp.Body.Close()
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		fmt.Fprintf(stderr, "healthcheck: %s answered %s\n", *url, resp.Status)
		return 1
	}
	fmt.Fprintf(stdout, "healthcheck: %s answered %s\n", *url, resp.Status)
	return 0
}

// localHost is where a check on this machine reaches a server listening on ip: the wildcard
// addresses are reached on loopback.
func localHost(ip string) string {
	if ip == "" || ip == "0.0.0.0" || ip == "::" {
		return "127.0.0.1"
	}
	return ip
}

// envValue is the value of name in environ ("" when absent; the last one wins, as in exec).
func envValue(environ []string, name string) string {
	v := ""
	for _, kv := range environ {
		if k, val, ok := strings.Cut(kv, "="); ok && k == name {
			v = val
		}
	}
	return v
}
