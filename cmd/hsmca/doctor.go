package main

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/hsmca/hsmca/hsm"
	"github.com/hsmca/hsmca/internal/config"
	"github.com/hsmca/hsmca/internal/daemon"
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
		if err == nil {
			err = st.Ping(ctx)
			st.Close()
		}
		report("store", err, cfg.Store.Backend+" answers")
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
		err := testSignature(ctx, h)
		report("test signature", err, "ECDSA P-256 signature made in the HSM verifies")
		h.Close()
	}
	storeCheck()
	if failed {
		return 1
	}
	return 0
}

// testSignature makes a throw-away key, signs, verifies and destroys it.
func testSignature(ctx context.Context, h *hsm.HSM) error {
	var b [8]byte
	_, _ = rand.Read(b[:])
	id := "hsmca-doctor-" + hex.EncodeToString(b[:])
	s, err := h.Generate(ctx, id, "hsmca/doctor", hsm.EC256)
	if err != nil {
		return fmt.Errorf("generate: %w", err)
	}
	defer h.Delete(ctx, id)
	digest := sha256.Sum256([]byte("hsmca doctor"))
	sig, err := s.Sign(rand.Reader, digest[:], crypto.SHA256)
	if err != nil {
		return fmt.Errorf("sign: %w", err)
	}
	pub, ok := s.Public().(*ecdsa.PublicKey)
	if !ok || !ecdsa.VerifyASN1(pub, digest[:], sig) {
		return errors.New("the signature does not verify with the key's public key")
	}
	return nil
}
