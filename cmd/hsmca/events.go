package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/hsmca/hsmca/internal/config"
	"github.com/hsmca/hsmca/internal/daemon"
	"github.com/hsmca/hsmca/signer"
	"github.com/hsmca/hsmca/store"
	"github.com/hsmca/hsmca/store/boltstore"
)

// eventsVerify walks the hash chain of each tenant's event log and names
// the first broken link; with --checkpoint it also checks that each chain
// extends the checkpoints given, and with --export it checks an exported
// copy instead of the store. Exit status: 0 every chain intact, 1 a chain
// is broken or could not be read, 2 usage or configuration error.
func eventsVerify(args []string, stdout, stderr io.Writer) int {
	fs := newFlags("events verify", stderr)
	cfgPath := configFlag(fs)
	tenant := fs.String("tenant", "", "verify this tenant's chain only (_platform for platform events)")
	all := fs.Bool("all", false, "verify every tenant that has events (the default)")
	cpPath := fs.String("checkpoint", "", "a checkpoint file (JSON, as GET /v1/events/checkpoints/... answers) or a directory of them (*.json): each chain must extend them")
	keyID := fs.String("key-id", "", "the checkpoint key's keyId to pin (default: the key each checkpoint's certificate holds)")
	export := fs.String("export", "", "verify this exported copy (JSON lines, hsmca events export or a file sink) instead of the store; - reads stdin")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if fs.NArg() > 0 || (*tenant != "" && *all) {
		fmt.Fprintln(stderr, "hsmca events verify: give --tenant T or --all, not both")
		return 2
	}
	if *tenant != "" && *tenant != store.PlatformTenant && !signer.ValidTenant(*tenant) {
		fmt.Fprintf(stderr, "hsmca events verify: %q is not a tenant name\n", *tenant)
		return 2
	}
	var cps []signer.Checkpoint
	if *cpPath != "" {
		var err error
		if cps, err = loadCheckpoints(*cpPath, *keyID, *tenant, stdout); err != nil {
			fmt.Fprintln(stderr, "hsmca events verify:", err)
			return 2
		}
	}
	if *export != "" {
		return verifyExport(*export, cps, stdout, stderr)
	}
	st, code := openStoreForCLI("events verify", *cfgPath, stderr)
	if st == nil {
		return code
	}
	defer st.Close()

	if len(cps) > 0 {
		return verifyCheckpoints(st, cps, stdout, stderr)
	}
	var tenants []string
	if *tenant != "" {
		tenants = []string{*tenant}
	}
	reports, err := signer.VerifyEventChains(context.Background(), st, tenants)
	broken := 0
	var records uint64
	for _, r := range reports {
		records += r.Events
		if r.Broken {
			broken++
			fmt.Fprintf(stdout, "tenant %s: BROKEN at record %d: %s\n", r.Tenant, r.BrokenSeq, r.Problem)
			continue
		}
		if r.Events == 0 {
			fmt.Fprintf(stdout, "tenant %s: no event records\n", r.Tenant)
			continue
		}
		fmt.Fprintf(stdout, "tenant %s: %d records, chain intact; head record %d, hash %s\n", r.Tenant, r.Events, r.HeadSeq, r.HeadHash)
	}
	if err != nil {
		fmt.Fprintln(stderr, "hsmca events verify:", err)
		return 1
	}
	switch {
	case len(reports) == 0:
		fmt.Fprintf(stdout, "no event records in the %s store\n", st.Backend())
	case broken > 0:
		fmt.Fprintf(stdout, "%d of %d tenant chains BROKEN\n", broken, len(reports))
		return 1
	default:
		fmt.Fprintf(stdout, "verified %d records in %d tenant chains: all intact\n", records, len(reports))
	}
	return 0
}

// openStoreForCLI opens the configured store for reading, refusing to
// create a bolt file that is not there. On failure it returns nil and the
// exit status.
func openStoreForCLI(cmd, cfgPath string, stderr io.Writer) (store.Store, int) {
	cfg, err := config.Load(cfgPath)
	if err != nil {
		fmt.Fprintf(stderr, "hsmca %s: %v\n", cmd, err)
		return nil, 2
	}
	if cfg.Store.Backend != "redis" {
		// Opening a bolt file creates it; a verifier must not invent an
		// empty log where the real one is missing.
		if _, err := os.Stat(cfg.Store.BoltPath); err != nil {
			fmt.Fprintf(stderr, "hsmca %s: no store at %s: %v\n", cmd, cfg.Store.BoltPath, err)
			return nil, 2
		}
	}
	octx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	st, err := daemon.OpenStore(octx, cfg)
	cancel()
	if err != nil {
		fmt.Fprintf(stderr, "hsmca %s: open store: %v\n", cmd, err)
		if errors.Is(err, boltstore.ErrLocked) {
			fmt.Fprintf(stderr, "hsmca %s: the bolt file is held by the running daemon; stop hsmcad to read it\n", cmd)
		}
		return nil, 2
	}
	return st, 0
}

// loadCheckpoints reads the checkpoint file or the *.json files of a
// directory, checks each signature (against keyID when set) and keeps
// those of tenant (all when empty).
func loadCheckpoints(path, keyID, tenant string, stdout io.Writer) ([]signer.Checkpoint, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	files := []string{path}
	if fi.IsDir() {
		if files, err = filepath.Glob(filepath.Join(path, "*.json")); err != nil {
			return nil, err
		}
		sort.Strings(files)
	}
	var out []signer.Checkpoint
	keys := map[string]bool{}
	for _, f := range files {
		raw, err := os.ReadFile(f)
		if err != nil {
			return nil, err
		}
		cps, err := signer.ParseCheckpoints(raw)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", f, err)
		}
		for i := range cps {
			if _, err := signer.VerifyCheckpoint(&cps[i], keyID); err != nil {
				return nil, fmt.Errorf("%s: checkpoint of %s at %d: %w", f, cps[i].Tenant, cps[i].Seq, err)
			}
			keys[cps[i].KeyID] = true
			if tenant == "" || cps[i].Tenant == tenant {
				out = append(out, cps[i])
			}
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%s: %w", path, signer.ErrNoCheckpoint)
	}
	ids := make([]string, 0, len(keys))
	for k := range keys {
		ids = append(ids, k)
	}
	sort.Strings(ids)
	fmt.Fprintf(stdout, "%d checkpoints, signatures valid, signed by key %s\n", len(out), strings.Join(ids, ", "))
	return out, nil
}

func verifyCheckpoints(st store.Store, cps []signer.Checkpoint, stdout, stderr io.Writer) int {
	verdicts, err := signer.VerifyCheckpoints(context.Background(), st, cps)
	broken := 0
	for _, v := range verdicts {
		if v.Broken {
			broken++
			fmt.Fprintf(stdout, "tenant %s: BROKEN at record %d: %s\n", v.Tenant, v.BrokenSeq, v.Problem)
			continue
		}
		fmt.Fprintf(stdout, "tenant %s: chain intact through record %d and extends %d checkpoints (the newest at record %d)\n",
			v.Tenant, v.Chain.HeadSeq, v.Checkpoints, v.Held)
	}
	if err != nil {
		fmt.Fprintln(stderr, "hsmca events verify:", err)
		return 1
	}
	if broken > 0 {
		fmt.Fprintf(stdout, "%d of %d tenant chains BROKEN\n", broken, len(verdicts))
		return 1
	}
	fmt.Fprintf(stdout, "verified %d tenant chains against their checkpoints: all intact\n", len(verdicts))
	return 0
}

func verifyExport(path string, cps []signer.Checkpoint, stdout, stderr io.Writer) int {
	var r io.Reader = os.Stdin
	if path != "-" {
		f, err := os.Open(path)
		if err != nil {
			fmt.Fprintln(stderr, "hsmca events verify:", err)
			return 2
		}
		defer f.Close()
		r = f
	}
	rep, err := signer.ReadExport(r, cps)
	if err != nil {
		fmt.Fprintln(stderr, "hsmca events verify:", err)
		return 1
	}
	broken := 0
	for _, t := range rep.Tenants {
		if t.Broken {
			broken++
			fmt.Fprintf(stdout, "tenant %s: BROKEN at record %d: %s\n", t.Tenant, t.BrokenSeq, t.Problem)
			continue
		}
		fmt.Fprintf(stdout, "tenant %s: records %d to %d, chain intact; %d checkpoints matched; head record %d, hash %s\n",
			t.Tenant, t.First, t.Last, t.Checkpoints, t.Last, t.LastHash)
	}
	if rep.Duplicates > 0 {
		fmt.Fprintf(stdout, "%d records came more than once (at-least-once delivery), each identical\n", rep.Duplicates)
	}
	if rep.Unreadable > 0 {
		fmt.Fprintf(stdout, "%d lines are no record and were skipped (a line cut short by a crash of the writer)\n", rep.Unreadable)
	}
	if broken > 0 {
		fmt.Fprintf(stdout, "%d of %d tenant chains BROKEN\n", broken, len(rep.Tenants))
		return 1
	}
	if len(rep.Tenants) == 0 {
		fmt.Fprintln(stdout, "no event records in the export")
		return 0
	}
	fmt.Fprintf(stdout, "verified %d tenant chains in the export: all intact\n", len(rep.Tenants))
	return 0
}

// eventsExport writes a tenant's chain from a sequence number as JSON
// lines (signer.ExportLine), which verify without the daemon.
func eventsExport(args []string, stdout, stderr io.Writer) int {
	fs := newFlags("events export", stderr)
	cfgPath := configFlag(fs)
	tenant := fs.String("tenant", "", "the tenant whose chain to export (_platform for platform events)")
	from := fs.Uint64("from", 1, "first sequence number to export")
	out := fs.String("out", "", "write to this file (default stdout)")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if fs.NArg() > 0 || *tenant == "" || *from == 0 {
		fmt.Fprintln(stderr, "hsmca events export: give --tenant T (and --from SEQ >= 1)")
		return 2
	}
	if *tenant != store.PlatformTenant && !signer.ValidTenant(*tenant) {
		fmt.Fprintf(stderr, "hsmca events export: %q is not a tenant name\n", *tenant)
		return 2
	}
	st, code := openStoreForCLI("events export", *cfgPath, stderr)
	if st == nil {
		return code
	}
	defer st.Close()
	w := stdout
	var f *os.File
	if *out != "" {
		var err error
		if f, err = os.OpenFile(*out, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o640); err != nil {
			fmt.Fprintln(stderr, "hsmca events export:", err)
			return 2
		}
		w = f
	}
	bw := bufio.NewWriter(w)
	n, err := exportChain(context.Background(), st, *tenant, *from, bw)
	if err == nil {
		err = bw.Flush()
	}
	if err == nil && f != nil {
		err = f.Close()
	}
	if err != nil {
		fmt.Fprintln(stderr, "hsmca events export:", err)
		return 1
	}
	fmt.Fprintf(stderr, "exported %d records of tenant %s\n", n, *tenant)
	return 0
}

func exportChain(ctx context.Context, st store.Store, tenant string, from uint64, w io.Writer) (int, error) {
	after, n := from-1, 0
	for {
		evs, err := st.ListEvents(ctx, tenant, after, 1000)
		if err != nil {
			return n, err
		}
		if len(evs) == 0 {
			return n, nil
		}
		for _, ev := range evs {
			line, err := signer.ExportLine(ev)
			if err != nil {
				return n, err
			}
			if _, err := w.Write(append(line, '\n')); err != nil {
				return n, err
			}
			n++
		}
		after = evs[len(evs)-1].Seq
	}
}
