// Command hsmcad is hsmca's daemon: a private CA and signing service whose
// keys stay in a PKCS#11 HSM.
package main

import (
	"context"
	"flag"
	"fmt"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"os/signal"
	"runtime/debug"
	"syscall"

	"github.com/hsmca/hsmca/internal/config"
	"github.com/hsmca/hsmca/internal/daemon"
)

// gcPercent is the collector's target when GOGC is not set: the daemon's
// live heap is small (tens of MiB), so at Go's default of 100 it collects
// many times a second under load; 400 trades some tens of MiB of memory for
// a few percent of every request's CPU. GOGC in the environment wins.
const gcPercent = 400

func main() {
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(gcPercent)
	}
	os.Exit(run())
}

func run() int {
	fs := flag.NewFlagSet("hsmcad", flag.ContinueOnError)
	cfgPath := fs.String("config", os.Getenv("HSMCA_CONFIG"), "YAML configuration file (HSMCA_CONFIG)")
	showVersion := fs.Bool("version", false, "print the version and exit")
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "usage: hsmcad [--config FILE]\n\nEnvironment overrides:\n")
		for _, e := range config.Env {
			fmt.Fprintf(fs.Output(), "  %-22s %s\n", e.Name, e.Help)
		}
		fmt.Fprintf(fs.Output(), "\nFlags:\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(os.Args[1:]); err != nil {
		return 2
	}
	if *showVersion {
		fmt.Println("hsmcad", daemon.Version)
		return 0
	}
	cfg, err := config.Load(*cfgPath)
	if err != nil {
		fmt.Fprintln(os.Stderr, "hsmcad:", err)
		return 2
	}
	// One log line per request: written in groups under load rather than
	// one system call each (see daemon.LogWriter); Close writes the rest.
	logOut := daemon.NewLogWriter(os.Stderr)
	defer logOut.Close()
	log := daemon.NewLogger(cfg.LogLevel, logOut)
	if addr := os.Getenv("HSMCA_PPROF_ADDR"); addr != "" {
		if err := servePprof(addr); err != nil {
			fmt.Fprintln(os.Stderr, "hsmcad: HSMCA_PPROF_ADDR:", err)
			return 2
		}
		log.Warn("profiling endpoint open", "addr", addr)
	}

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	d, err := daemon.Start(ctx, cfg, log)
	if err != nil {
		log.Error("hsmcad failed to start", "err", err.Error())
		return 1
	}
	code := 0
	select {
	case <-ctx.Done():
		log.Info("shutting down: draining in-flight requests")
	case err := <-d.Errors():
		log.Error("serving failed", "err", err.Error())
		code = 1
	}
	stop()
	if err := d.Shutdown(context.Background()); err != nil {
		log.Error("shutdown", "err", err.Error())
		code = 1
	}
	log.Info("hsmcad stopped")
	return code
}

// servePprof serves Go's profiles (/debug/pprof/) on a loopback address,
// for `make bench` and for chasing a slowdown: a profile shows code paths
// and timings, so it is never served beyond the machine itself.
func servePprof(addr string) error {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return err
	}
	if ip := net.ParseIP(host); ip == nil || !ip.IsLoopback() {
		return fmt.Errorf("%q: only a loopback address (127.0.0.1:PORT) is allowed", addr)
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	go func() { _ = http.Serve(ln, mux) }()
	return nil
}
