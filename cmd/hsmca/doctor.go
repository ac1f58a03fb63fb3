package main

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/hsmca/hsmca/hsm"
	"github.com/hsmca/hsmca/internal/config"
	"github.com/hsmca/hsmca/internal/daemon"
	"github.com/hsmca/hsmca/store/redisstore"
)

// doctor checks, in order, everything the daemon needs, one line each.
// A failed step ends the run: the later ones depend on it.
func doctor(args []string, stdout, stderr io.Writer) int {
	fs := newFlags("doctor", stderr)
	cfgPath := configFlag(fs)
	if err := fs.Parse(args); err != nil {
		return 2
	}
	failed := false
	report := func(name string, err error, detail string) bool {
		if err != nil {
			failed = true
			fmt.Fprintf(stdout, "FAIL  %-16s %v\n", name, err)
			return false
		}
		fmt.Fprintf(stdout, "ok    %-16s %s\n", name, detail)
		return true
	}
	cfg, err := config.Load(*cfgPath)
	if !report("config", err, "loaded") {
		return 1
	}
	publicURL := cfg.PublicBaseURL
	if publicURL == "" {
		publicURL = "not set: certificates name no CRL distribution point or issuer certificate URL, " +
			"and URLs in answers (such as Huawei's crl_dis_point) follow each request's Host"
		if cfg.IssuerAltName == "" {
			publicURL += ", and managed DTS root CAs are refused without issuer_alt_name"
		}
		publicURL += "; set public_base_url (HSMCA_PUBLIC_BASE_URL)"
	}
	report("public URL", nil, publicURL)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	storeCheck := func() {
		if cfg.Store.Backend == "bolt" && cfg.AdminSocket != "" && daemonListening(cfg.AdminSocket) {
			err := opsCall(cfg.AdminSocket, "GET", "/ops/ping", nil, nil)
			report("store", err, "bolt "+cfg.Store.BoltPath+" held by the running daemon, which answers")
			return
		}
		st, err := daemon.OpenStore(ctx, cfg)
		if err != nil {
			report("store", err, "")
			return
		}
		defer st.Close()
		err = st.Ping(ctx)
		if report("store", err, cfg.Store.Backend+" answers") {
			if rs, ok := st.(*redisstore.Store); ok {
				redisReport(ctx, rs, stdout, report)
			}
		}
	}

	slots, err := hsm.ListSlots(cfg.PKCS11.Module)
	if !report("module", err, cfg.PKCS11.Module+" loads") {
		storeCheck()
		return 1
	}
	var found *hsm.SlotInfo
	for i, s := range slots {
		if s.Initialized && ((cfg.PKCS11.Slot != nil && s.ID == *cfg.PKCS11.Slot) || (cfg.PKCS11.Slot == nil && s.Label == cfg.PKCS11.TokenLabel)) {
			found = &slots[i]
			break
		}
	}
	if found == nil {
		report("token", fmt.Errorf("no initialised token labelled %q (run: hsmca slot list)", cfg.PKCS11.TokenLabel), "")
		storeCheck()
		return 1
	}
	report("token", nil, fmt.Sprintf("%q in slot %d (%s %s)", found.Label, found.ID, found.Manufacturer, found.Model))

	hc, err := daemon.HSMConfig(cfg, nil, nil)
	var h *hsm.HSM
	if err == nil {
		h, err = hsm.Open(hc)
	}
	if report("login", err, "user PIN accepted") {
		alg, err := testSignature(ctx, h)
		report("test signature", err, string(alg)+" key made, its signature verifies, key destroyed")
		tokenTable(ctx, h, stdout, report)
		h.Close()
	}
	storeCheck()
	if failed {
		return 1
	}
	return 0
}

// testSignature makes a throw-away key of the first algorithm the
// token offers (EC256 if it can), signs, verifies and destroys it.
func testSignature(ctx context.Context, h *hsm.HSM) (hsm.Algorithm, error) {
	algs := h.Capabilities().Algorithms()
	if len(algs) == 0 {
		return "", errors.New("the token offers none of the key algorithms hsmca uses (see algorithms below)")
	}
	alg := algs[0]
	for _, a := range []hsm.Algorithm{hsm.EC256, hsm.RSA2048} {
		if h.Supports(a) == nil {
			alg = a
			break
		}
	}
	var b [8]byte
	_, _ = rand.Read(b[:])
	id := "hsmca-doctor-" + hex.EncodeToString(b[:])
	s, err := h.Generate(ctx, id, "hsmca/doctor", alg)
	if err != nil {
		return alg, fmt.Errorf("generate %s: %w", alg, err)
	}
	defer h.Delete(ctx, id)
	msg := []byte("hsmca doctor")
	digest := sha256.Sum256(msg)
	var (
		sig []byte
		ok  bool
	)
	switch pub := s.Public().(type) {
	case ed25519.PublicKey:
		if sig, err = s.Sign(rand.Reader, msg, crypto.Hash(0)); err == nil {
			ok = ed25519.Verify(pub, msg, sig)
		}
	case *ecdsa.PublicKey:
		if sig, err = s.Sign(rand.Reader, digest[:], crypto.SHA256); err == nil {
			ok = ecdsa.VerifyASN1(pub, digest[:], sig)
		}
	case *rsa.PublicKey:
		if sig, err = s.Sign(rand.Reader, digest[:], crypto.SHA256); err == nil {
			ok = rsa.VerifyPKCS1v15(pub, crypto.SHA256, digest[:], sig) == nil
		}
	}
	if err != nil {
		return alg, fmt.Errorf("sign with %s: %w", alg, err)
	}
	if !ok {
		return alg, errors.New("the signature does not verify with the key's public key")
	}
	return alg, nil
}

// token is what the doctor reads of an open token; *hsm.HSM is one.
type token interface {
	Capabilities() *hsm.Capabilities
	Supports(alg hsm.Algorithm) error
	SupportsFeature(feature string) error
	TokenInfo(ctx context.Context) (hsm.TokenInfo, error)
}

// what needs each feature, for the table's ✗ lines.
var featureUsers = map[string]string{
	hsm.FeaturePSS:    "keys API PS256/PS384/PS512 refused",
	hsm.FeatureWrap:   "PCA certificates with a key made by hsmca and access keys refused",
	hsm.FeatureImport: "APIG certificate imports and updates refused",
}

// tokenTable prints what the token can do for hsmca: the mechanisms hsmca
// uses that it has (key sizes, operations), each algorithm and feature
// (✓, or ✗ and the missing mechanism), and its session limits. A token
// that lacks some is fine; one offering no key algorithm fails.
func tokenTable(ctx context.Context, h token, w io.Writer, report func(string, error, string) bool) {
	caps := h.Capabilities()
	var used []hsm.Mechanism
	total := 0
	if caps != nil {
		total = len(caps.Mechanisms)
		for _, m := range caps.Mechanisms {
			// hsm names the mechanisms hsmca uses; others keep a code.
			if !strings.HasPrefix(m.Name, "CKM_0x") {
				used = append(used, m)
			}
		}
	}
	report("mechanisms", nil, fmt.Sprintf("the token lists %d; the %d hsmca uses:", total, len(used)))
	fmt.Fprintf(w, "      %-28s %-20s %s\n", "MECHANISM", "KEY SIZES", "USES")
	for _, m := range used {
		fmt.Fprintf(w, "      %-28s %-20s %s\n", m.Name, keySizes(m), strings.Join(m.Uses(), " "))
	}

	var offered []string
	type row struct{ name, mark string }
	var rows []row
	for _, a := range hsm.AllAlgorithms() {
		if err := h.Supports(a); err != nil {
			rows = append(rows, row{string(a), "✗ " + unsupportedReason(err)})
			continue
		}
		offered = append(offered, string(a))
		rows = append(rows, row{string(a), "✓"})
	}
	for _, f := range []string{hsm.FeaturePSS, hsm.FeatureWrap, hsm.FeatureImport} {
		if err := h.SupportsFeature(f); err != nil {
			rows = append(rows, row{f, "✗ " + unsupportedReason(err) + ": " + featureUsers[f]})
			continue
		}
		rows = append(rows, row{f, "✓"})
	}
	var err error
	if len(offered) == 0 {
		err = errors.New("the token offers none of the key algorithms hsmca uses")
	}
	report("algorithms", err, strings.Join(offered, ", "))
	for _, r := range rows {
		fmt.Fprintf(w, "      %-18s %s\n", r.name, r.mark)
	}

	ti, err := h.TokenInfo(ctx)
	detail := ""
	if err == nil {
		free := sessionNumber(ti.FreeSessions)
		if sessionLimit(ti.MaxSessions) == "none" {
			free = "-"
		}
		detail = fmt.Sprintf("token limit %s, open %s, free %s; hsmca's pool %d",
			sessionLimit(ti.MaxSessions), sessionNumber(ti.Sessions), free, ti.PoolSize)
		if ti.FreeSessions >= 0 && ti.FreeSessions < ti.PoolSize {
			detail += fmt.Sprintf(" (more than the %d the token has free: lower pool_size)", ti.FreeSessions)
		}
		if ti.SessionCopies {
			detail += "; keys sign through session copies (pkcs11.session_copies)"
		}
	}
	report("sessions", err, detail)
}

// unsupportedReason is the missing mechanism an error of Supports names.
func unsupportedReason(err error) string {
	var u *hsm.UnsupportedError
	if errors.As(err, &u) {
		return u.Reason
	}
	return err.Error()
}

// keySizes is a mechanism's key size range as the token reports it: bits
// for RSA and EC, bytes for AES, no unit for the others (PKCS#11 leaves
// the unit to the mechanism).
func keySizes(m hsm.Mechanism) string {
	if m.MinKeySize == 0 && m.MaxKeySize == 0 {
		return "-"
	}
	unit := ""
	switch n := strings.TrimPrefix(m.Name, "CKM_"); {
	case strings.Contains(n, "AES"):
		unit = " bytes"
	case strings.Contains(n, "RSA"), strings.HasPrefix(n, "EC"), strings.HasPrefix(n, "EDDSA"):
		unit = " bits"
	}
	return fmt.Sprintf("%d-%d%s", m.MinKeySize, m.MaxKeySize, unit)
}

// sessionLimit words the token's session limit: 0 is none.
func sessionLimit(n int) string {
	if n == 0 {
		return "none"
	}
	return sessionNumber(n)
}

// sessionNumber words a session count: -1 is unknown.
func sessionNumber(n int) string {
	if n < 0 {
		return "unknown"
	}
	return strconv.Itoa(n)
}

// redisReport shows the Redis mode, the topology the store sees (master,
// replicas with their lag; sentinels; cluster masters and slots) and
// fails when the store cannot write everywhere or a failover could not
// happen: a standalone URL naming a replica, too few sentinels answering
// to agree on a failover, a cluster not serving every slot. It shows
// addresses only, never a URL or a password.
func redisReport(ctx context.Context, s *redisstore.Store, w io.Writer, report func(string, error, string) bool) {
	top, err := s.Topology(ctx)
	if err != nil {
		report("redis", err, "")
		return
	}
	var problems []string
	replicas := 0
	for _, m := range top.Masters {
		switch {
		case m.Err != "":
			problems = append(problems, fmt.Sprintf("master %s: %s", m.Addr, m.Err))
		case m.Role != "master":
			problems = append(problems, fmt.Sprintf("%s is a replica (role %s), not a master: writes would fail", m.Addr, m.Role))
		}
		replicas += len(m.Replicas)
	}
	var detail string
	switch top.Mode {
	case redisstore.Sentinel:
		answer, names := 0, map[string]bool{}
		for _, st := range top.Sentinels {
			if st.Err == "" {
				answer++
				names[st.Master] = true
			}
		}
		if answer < len(top.Sentinels)/2+1 {
			problems = append(problems, fmt.Sprintf("%d of %d sentinels answer: too few to authorise a failover", answer, len(top.Sentinels)))
		}
		if len(names) > 1 {
			problems = append(problems, "the sentinels name different masters")
		}
		detail = fmt.Sprintf("sentinel, master %q db %d at %s, %d replica(s); %d of %d sentinels answer",
			top.MasterName, top.DB, top.Masters[0].Addr, replicas, answer, len(top.Sentinels))
	case redisstore.Cluster:
		if top.ClusterState != "ok" || top.SlotsOK < 16384 {
			problems = append(problems, fmt.Sprintf("cluster state %s, %d of 16384 slots served", top.ClusterState, top.SlotsOK))
		}
		detail = fmt.Sprintf("cluster, state %s, %d of 16384 slots served, %d master(s), %d replica(s)",
			top.ClusterState, top.SlotsOK, len(top.Masters), replicas)
	default:
		detail = fmt.Sprintf("standalone, db %d at %s, %d replica(s)", top.DB, top.Masters[0].Addr, replicas)
	}
	if top.Mode != redisstore.Standalone {
		for _, m := range top.Masters {
			if m.Err == "" && len(m.Replicas) == 0 {
				detail += fmt.Sprintf("; master %s has no replica: a failover would have nothing to promote", m.Addr)
			}
		}
	}
	if n, timeout := s.WaitReplicas(); n > 0 {
		if s.WaitsForAllOnline() {
			detail += fmt.Sprintf("; writes wait for every online replica of their master (at least %d), up to %s", n, timeout)
		} else {
			detail += fmt.Sprintf("; writes wait for %d replica(s), up to %s", n, timeout)
		}
		for _, m := range top.Masters {
			if m.Err == "" && len(m.Replicas) < n {
				problems = append(problems, fmt.Sprintf("master %s has %d replica(s) connected and writes wait for %d: every write answers 503 until one is back (store.redis.wait_replicas)",
					m.Addr, len(m.Replicas), n))
			}
		}
	} else if top.Mode != redisstore.Standalone {
		detail += "; writes do not wait for replicas: a failover may lose acknowledged writes"
	}
	if len(problems) > 0 {
		report("redis", errors.New(strings.Join(problems, "; ")), "")
	} else {
		report("redis", nil, detail)
	}
	for _, m := range top.Masters {
		line := fmt.Sprintf("      %-9s %-21s", "master", m.Addr)
		if len(m.Slots) > 0 {
			line += " slots " + strings.Join(m.Slots, ",")
		}
		if m.Err != "" {
			line += " " + m.Err
		}
		fmt.Fprintln(w, strings.TrimRight(line, " "))
		for _, r := range m.Replicas {
			fmt.Fprintf(w, "      %-9s %-21s %s, %d bytes behind, acknowledged %ds ago\n", "replica", r.Addr, r.State, r.LagBytes, r.LagSeconds)
		}
	}
	for _, st := range top.Sentinels {
		if st.Err != "" {
			fmt.Fprintf(w, "      %-9s %-21s %s\n", "sentinel", st.Addr, st.Err)
			continue
		}
		fmt.Fprintf(w, "      %-9s %-21s names %s (%s), knows %d replica(s) and %d other sentinel(s), quorum %d\n",
			"sentinel", st.Addr, st.Master, st.Flags, st.Replicas, st.Sentinels, st.Quorum)
	}
}
