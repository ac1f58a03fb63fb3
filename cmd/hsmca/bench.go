package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/hsmca/hsmca/internal/bench"
)

func benchCmd(args []string, stdout, stderr io.Writer) int {
	fs := newFlags("bench", stderr)
	module := moduleFlag(fs)
	envDur := func(name string, def time.Duration) time.Duration {
		if v := getenv(name); v != "" {
			if d, err := time.ParseDuration(v); err == nil {
				return d
			}
		}
		return def
	}
	// envCount is a count from the environment (def when unset); false,
	// having said why, when it is not a whole number of at least least.
	envCount := func(name string, def, least int) (int, bool) {
		v := getenv(name)
		if v == "" {
			return def, true
		}
		n, err := strconv.Atoi(v)
		if err != nil || n < least {
			fmt.Fprintf(stderr, "hsmca bench: %s=%q: want a count of at least %d\n", name, v, least)
			return 0, false
		}
		return n, true
	}
	envStr := func(name, def string) string {
		if v := getenv(name); v != "" {
			return v
		}
		return def
	}
	hsmcad := fs.String("hsmcad", "", "daemon binary (default: hsmcad beside this program)")
	stores := fs.String("stores", envStr("BENCH_STORES", "bolt,redis,sentinel,sentinel-nowait,cluster"), "store backends, comma-separated (BENCH_STORES)")
	duration := fs.Duration("duration", envDur("BENCH_DURATION", 8*time.Second), "measured time of each row (BENCH_DURATION)")
	warmup := fs.Duration("warmup", envDur("BENCH_WARMUP", 2*time.Second), "discarded warm-up before each row (BENCH_WARMUP)")
	conc := fs.String("concurrency", envStr("BENCH_CONCURRENCY", "1,8,64"), "HTTP connections, comma-separated (BENCH_CONCURRENCY)")
	inproc := fs.String("inproc", envStr("BENCH_INPROC", "1,8"), "in-process goroutines, comma-separated (BENCH_INPROC)")
	seedDef, ok := envCount("BENCH_SEED_COUNT", 100000, 0)
	if !ok {
		return 2
	}
	seedN := fs.Int("seed-count", seedDef, "certificates stored before the growth rows; 0 skips them (BENCH_SEED_COUNT)")
	seedW := fs.Int("seed-workers", 4, "signing goroutines of the seeding")
	crlDef, ok := envCount("BENCH_CRL_ENTRIES", 100000, 0)
	if !ok {
		return 2
	}
	crlN := fs.Int("crl-entries", crlDef, "revocation entries of the CRL rows' CA; 0 skips them (BENCH_CRL_ENTRIES)")
	seedSign := fs.String("seed-sign", envStr("BENCH_SEED_SIGN", "standin"), "who signs seeded certificates: standin (a software key, fast) or hsm (the CA's key) (BENCH_SEED_SIGN)")
	profile := fs.String("profile-dir", envStr("BENCH_PROFILE_DIR", ""), "write CPU profiles of the daemon at the highest concurrency here (BENCH_PROFILE_DIR)")
	ops := fs.String("ops", envStr("BENCH_OPS", ""), "HTTP rows to measure, comma-separated: issue, sign, show, ocsp, list; empty: all (BENCH_OPS)")
	out := fs.String("out", envStr("BENCH_OUT", ""), "also write the table to this file (BENCH_OUT)")
	keep := fs.Bool("keep", false, "keep the work directory (tokens, stores, daemon logs)")
	roundsDef, ok := envCount("BENCH_ROUNDS", 1, 1)
	if !ok {
		return 2
	}
	rounds := fs.Int("rounds", roundsDef, "run everything this many times, the stores taking turns at going first; the table gives each row's median and the targets the rounds that met them (BENCH_ROUNDS)")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	seed := *seedN
	if *rounds < 1 {
		fmt.Fprintf(stderr, "hsmca bench: --rounds %d: want at least 1\n", *rounds)
		return 2
	}
	if *seedSign != "standin" && *seedSign != "hsm" {
		fmt.Fprintf(stderr, "hsmca bench: --seed-sign %q: standin or hsm\n", *seedSign)
		return 2
	}
	cs, err := ints(*conc)
	if err != nil {
		fmt.Fprintln(stderr, "hsmca bench: --concurrency:", err)
		return 2
	}
	ns, err := ints(*inproc)
	if err != nil {
		fmt.Fprintln(stderr, "hsmca bench: --inproc:", err)
		return 2
	}
	if *hsmcad == "" {
		self, err := os.Executable()
		if err != nil {
			fmt.Fprintln(stderr, "hsmca bench:", err)
			return 2
		}
		*hsmcad = filepath.Join(filepath.Dir(self), "hsmcad")
	}
	cfg := bench.Config{Hsmcad: *hsmcad, Module: *module, Phase: bench.Phase{Warmup: *warmup, Duration: *duration},
		Concurrency: cs, InProc: ns, SeedCount: seed, CRLEntries: *crlN, SeedWorkers: *seedW, SeedHSM: *seedSign == "hsm", ProfileDir: *profile, Keep: *keep, Log: stderr, Rounds: *rounds}
	for _, o := range strings.Split(*ops, ",") {
		if o = strings.TrimSpace(o); o != "" {
			if bench.OpNames[o] == "" {
				fmt.Fprintf(stderr, "hsmca bench: unknown operation %q (issue, sign, show, ocsp, list)\n", o)
				return 2
			}
			cfg.Ops = append(cfg.Ops, o)
		}
	}
	for _, s := range strings.Split(*stores, ",") {
		if s = strings.TrimSpace(s); s != "" {
			if !slices.Contains(bench.KnownStores, s) {
				fmt.Fprintf(stderr, "hsmca bench: unknown store %q (%s)\n", s, strings.Join(bench.KnownStores, ", "))
				return 2
			}
			cfg.Stores = append(cfg.Stores, s)
		}
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	started := time.Now()
	rows, runErr := bench.Run(ctx, cfg)
	var report strings.Builder
	fmt.Fprintf(&report, "hsmca bench: %d CPUs (GOMAXPROCS %d), %s/%s; warm-up %s, %s per row; %d certificates seeded for the growth rows; %d revocation entries for the CRL rows; run took %s\n\n",
		runtime.NumCPU(), runtime.GOMAXPROCS(0), runtime.GOOS, runtime.GOARCH, *warmup, *duration, seed, *crlN,
		time.Since(started).Round(time.Second))
	combined := bench.Combine(rows)
	bench.Table(&report, combined)
	bench.RoundsNote(&report, combined)
	fmt.Fprintln(&report)
	maxC := 0
	for _, c := range cs {
		maxC = max(maxC, c)
	}
	bench.Targets(&report, combined, bench.SingleStores(cfg.Stores), maxC)
	bench.PerRequestTargets(&report, rows, bench.SingleStores(cfg.Stores), maxC)
	bench.ReplicationCost(&report, combined, cs)
	if rs := bench.SplitRounds(rows); len(rs) > 1 {
		for i, r := range rs {
			fmt.Fprintf(&report, "\nRound %d:\n\n", i+1)
			bench.Table(&report, r)
		}
	}
	fmt.Fprint(stdout, report.String())
	if *out != "" {
		if err := os.WriteFile(*out, []byte(report.String()), 0o644); err != nil {
			fmt.Fprintln(stderr, "hsmca bench:", err)
		}
	}
	if runErr != nil {
		fmt.Fprintln(stderr, "hsmca bench:", runErr)
		return 1
	}
	return 0
}

func ints(s string) ([]int, error) {
	var out []int
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p == "" {
			continue
		}
		n, err := strconv.Atoi(p)
		if err != nil || n < 1 {
			return nil, fmt.Errorf("%q is not a positive count", p)
		}
		out = append(out, n)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("no count in %q", s)
	}
	return out, nil
}
