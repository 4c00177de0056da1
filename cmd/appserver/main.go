// Command appserver runs roomengine: the live-room API, Aliyun callbacks and the WebSocket
// push gateway. It only reads the configuration and wires the parts together.
//
// `appserver import-legacy` copies the old Node server's users and rooms from its Redis
// into the configured store (see importlegacy.go). `appserver watch -topic ROOM` prints the
// push messages of a room, one JSON line per WebSocket frame (see watch.go). `appserver
// version` (or -version) prints the build (version.go); `appserver healthcheck` asks the
// local server's /readyz, for images that have no shell or curl (healthcheck.go).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"os"
	"os/signal"
	"syscall"

	"roomengine/config"
)

func main() {
	os.Exit(run(os.Args[1:]))
}

func run(args []string) int {
	if len(args) > 0 && (args[0] == "version" || args[0] == "-version" || args[0] == "--version") {
		return runVersion(os.Stdout)
	}
	if len(args) > 0 && args[0] == "healthcheck" {
		return runHealthcheck(args[1:], os.Environ(), os.Stdout, os.Stderr)
	}
	if len(args) > 0 && args[0] == "import-legacy" {
		return runImportLegacy(args[1:], os.Environ(), os.Stdout, os.Stderr)
	}
	if len(args) > 0 && args[0] == "watch" {
		ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
		defer stop()
		return runWatch(ctx, args[1:], os.Stdout, os.Stderr)
	}
	fs := flag.NewFlagSet("appserver", flag.ContinueOnError)
	configPath := fs.String("config", os.Getenv(config.EnvConfigFile), "YAML configuration file (optional)")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	cfg, err := config.Load(*configPath, os.Environ())
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	// Listen before anything starts: an address that cannot be used (a port in use, an ip
	// that is not this machine's) stops start-up with one line naming the keys, like any
	// other configuration error.
	ln, err := net.Listen("tcp", cfg.Addr())
	if err != nil {
		fmt.Fprintf(os.Stderr, "config: ip/port: cannot listen on %s: %v\n", cfg.Addr(), listenReason(err))
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	app, err := newApp(ctx, cfg, os.Stderr)
	if err != nil {
		_ = ln.Close()
		fmt.Fprintln(os.Stderr, "appserver:", err)
		return 1
	}
	if err := app.serve(ctx, ln); err != nil && !errors.Is(err, context.Canceled) {
		app.log.Error("server stopped", "err", err)
		return 1
	}
	return 0
}

// listenReason is the innermost error of a failed listen ("bind: address already in use",
// "no such host"), without the operation and address the message already names.
func listenReason(err error) error {
	var op *net.OpError
	if errors.As(err, &op) && op.Err != nil {
		return op.Err
	}
	return err
}
