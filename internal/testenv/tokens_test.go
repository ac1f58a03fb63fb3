package testenv

import (
	"bufio"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/asn1"
	"errors"
	"fmt"
	"math/big"
	"os"
	"os/exec"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/miekg/pkcs11"
	"github.com/stretchr/testify/require"
)

// rv is the CKR_ code of a PKCS#11 error (0 when err is nil or not one).
func rv(err error) pkcs11.Error {
	var e pkcs11.Error
	if errors.As(err, &e) {
		return e
	}
	return 0
}

// openToken loads tok.Module in a context of its own, initialises it and
// finds tok's slot; the context is finalised and unloaded at cleanup.
func openToken(t *testing.T, tok TokenSpec) (*pkcs11.Ctx, uint) {
	t.Helper()
	ctx := pkcs11.New(tok.Module)
	require.NotNil(t, ctx, "load %s", tok.Module)
	require.NoError(t, ctx.Initialize(), "C_Initialize %s", tok.Name)
	t.Cleanup(func() {
		_ = ctx.Finalize()
		ctx.Destroy()
	})
	return ctx, findSlot(t, ctx, tok)
}

func findSlot(t *testing.T, ctx *pkcs11.Ctx, tok TokenSpec) uint {
	t.Helper()
	slots, err := ctx.GetSlotList(true)
	require.NoError(t, err)
	for _, s := range slots {
		info, err := ctx.GetTokenInfo(s)
		require.NoError(t, err)
		if strings.TrimRight(info.Label, " \x00") == tok.Label {
			if tok.HasSlot {
				require.Equal(t, tok.Slot, s, "slot of %s", tok.Label)
			}
			return s
		}
	}
	all, err := ctx.GetSlotList(false)
	var diag []string
	for _, s := range all {
		si, err := ctx.GetSlotInfo(s)
		_, terr := ctx.GetTokenInfo(s)
		diag = append(diag, fmt.Sprintf("slot %d flags 0x%x err %v tokeninfo %v", s, si.Flags, err, terr))
	}
	t.Fatalf("%s: no token labelled %q among slots %v (all: %v %v: %s)", tok.Name, tok.Label, slots, all, err, strings.Join(diag, "; "))
	return 0
}

func login(t *testing.T, ctx *pkcs11.Ctx, slot uint, pin string) pkcs11.SessionHandle {
	t.Helper()
	sh, err := ctx.OpenSession(slot, pkcs11.CKF_SERIAL_SESSION|pkcs11.CKF_RW_SESSION)
	require.NoError(t, err, "C_OpenSession")
	err = ctx.Login(sh, pkcs11.CKU_USER, pin)
	if rv(err) != pkcs11.CKR_USER_ALREADY_LOGGED_IN {
		require.NoError(t, err, "C_Login")
	}
	return sh
}

func mechFlags(f uint) string {
	var out []string
	for _, x := range []struct {
		bit  uint
		name string
	}{
		{pkcs11.CKF_GENERATE_KEY_PAIR, "genpair"}, {pkcs11.CKF_GENERATE, "gen"},
		{pkcs11.CKF_SIGN, "sign"}, {pkcs11.CKF_VERIFY, "verify"},
		{pkcs11.CKF_ENCRYPT, "enc"}, {pkcs11.CKF_DECRYPT, "dec"},
		{pkcs11.CKF_WRAP, "wrap"}, {pkcs11.CKF_UNWRAP, "unwrap"},
		{pkcs11.CKF_DERIVE, "derive"}, {pkcs11.CKF_DIGEST, "digest"},
	} {
		if f&x.bit != 0 {
			out = append(out, x.name)
		}
	}
	return strings.Join(out, ",")
}

// TestTokenMatrix talks to every row through PKCS#11 directly: token facts,
// mechanisms, a login, and an RSA (and, where offered, EC) key that signs.
// All the modules load into this one process.
func TestTokenMatrix(t *testing.T) {
	ForEachToken(t, func(t *testing.T, tok TokenSpec) {
		require.NotEmpty(t, tok.Module)
		require.NotEmpty(t, tok.PIN)
		b, err := os.ReadFile(tok.PINFile)
		require.NoError(t, err)
		require.Equal(t, tok.PIN+"\n", string(b))

		ctx, slot := openToken(t, tok)
		ti, err := ctx.GetTokenInfo(slot)
		require.NoError(t, err)
		t.Logf("%s: slot %d label %q model %q manufacturer %q flags 0x%x sessions max %d rw max %d PIN %d-%d",
			tok.Name, slot, strings.TrimSpace(ti.Label), strings.TrimSpace(ti.Model), strings.TrimSpace(ti.ManufacturerID),
			ti.Flags, ti.MaxSessionCount, ti.MaxRwSessionCount, ti.MinPinLen, ti.MaxPinLen)
		require.NotZero(t, ti.Flags&pkcs11.CKF_TOKEN_INITIALIZED)
		require.NotZero(t, ti.Flags&pkcs11.CKF_USER_PIN_INITIALIZED)

		mechs, err := ctx.GetMechanismList(slot)
		require.NoError(t, err)
		have := map[uint]bool{}
		var lines []string
		for _, m := range mechs {
			have[m.Mechanism] = true
			mi, err := ctx.GetMechanismInfo(slot, []*pkcs11.Mechanism{m})
			require.NoError(t, err)
			lines = append(lines, fmt.Sprintf("%-32s %5d-%-5d %s", MechanismName(m.Mechanism), mi.MinKeySize, mi.MaxKeySize, mechFlags(mi.Flags)))
		}
		sort.Strings(lines)
		t.Logf("%s: %d mechanisms:\n  %s", tok.Name, len(mechs), strings.Join(lines, "\n  "))

		sh := login(t, ctx, slot, tok.PIN)
		rnd, err := ctx.GenerateRandom(sh, 16)
		require.NoError(t, err)
		require.Len(t, rnd, 16)

		require.True(t, have[pkcs11.CKM_RSA_PKCS_KEY_PAIR_GEN] && have[pkcs11.CKM_RSA_PKCS], "%s: RSA", tok.Name)
		// tpm2-pkcs11 makes token objects only (CKA_TOKEN false is
		// CKR_ATTRIBUTE_VALUE_INVALID).
		onToken := tok.Name == TokenTPM2
		signRSA(t, ctx, sh, onToken)
		if have[pkcs11.CKM_EC_KEY_PAIR_GEN] && have[pkcs11.CKM_ECDSA] {
			signECDSA(t, ctx, sh, onToken)
		} else {
			t.Logf("%s: no EC key generation or ECDSA", tok.Name)
		}
		if tok.Name == TokenTPM2 {
			// It lists CKM_AES_KEY_GEN but has no C_GenerateKey.
			tokenDataObject(t, ctx, sh)
		} else {
			tokenObject(t, ctx, sh)
		}
		require.NoError(t, ctx.Logout(sh))
		require.NoError(t, ctx.CloseSession(sh))
	})
}

// tokenObject stores a private AES key on the token, finds it by label and
// destroys it.
func tokenObject(t *testing.T, ctx *pkcs11.Ctx, sh pkcs11.SessionHandle) {
	t.Helper()
	label := fmt.Sprintf("matrix-%d-%d", os.Getpid(), time.Now().UnixNano())
	_, err := ctx.GenerateKey(sh, []*pkcs11.Mechanism{pkcs11.NewMechanism(pkcs11.CKM_AES_KEY_GEN, nil)},
		[]*pkcs11.Attribute{
			pkcs11.NewAttribute(pkcs11.CKA_TOKEN, true),
			pkcs11.NewAttribute(pkcs11.CKA_PRIVATE, true),
			pkcs11.NewAttribute(pkcs11.CKA_SENSITIVE, true),
			pkcs11.NewAttribute(pkcs11.CKA_VALUE_LEN, 32),
			pkcs11.NewAttribute(pkcs11.CKA_LABEL, label),
			pkcs11.NewAttribute(pkcs11.CKA_ENCRYPT, true),
		})
	require.NoError(t, err, "token AES key")
	require.NoError(t, ctx.FindObjectsInit(sh, []*pkcs11.Attribute{pkcs11.NewAttribute(pkcs11.CKA_LABEL, label)}))
	found, _, err := ctx.FindObjects(sh, 10)
	require.NoError(t, err)
	require.NoError(t, ctx.FindObjectsFinal(sh))
	require.Len(t, found, 1)
	require.NoError(t, ctx.DestroyObject(sh, found[0]))
}

// tokenDataObject stores a private data object on the token, finds it by
// label and destroys it (for a token without C_GenerateKey).
func tokenDataObject(t *testing.T, ctx *pkcs11.Ctx, sh pkcs11.SessionHandle) {
	t.Helper()
	label := fmt.Sprintf("matrix-%d-%d", os.Getpid(), time.Now().UnixNano())
	_, err := ctx.CreateObject(sh, []*pkcs11.Attribute{
		pkcs11.NewAttribute(pkcs11.CKA_CLASS, pkcs11.CKO_DATA),
		pkcs11.NewAttribute(pkcs11.CKA_TOKEN, true),
		pkcs11.NewAttribute(pkcs11.CKA_PRIVATE, true),
		pkcs11.NewAttribute(pkcs11.CKA_LABEL, label),
		pkcs11.NewAttribute(pkcs11.CKA_VALUE, []byte("hsmca token matrix")),
	})
	require.NoError(t, err, "token data object")
	require.NoError(t, ctx.FindObjectsInit(sh, []*pkcs11.Attribute{pkcs11.NewAttribute(pkcs11.CKA_LABEL, label)}))
	found, _, err := ctx.FindObjects(sh, 10)
	require.NoError(t, err)
	require.NoError(t, ctx.FindObjectsFinal(sh))
	require.Len(t, found, 1)
	require.NoError(t, ctx.DestroyObject(sh, found[0]))
}

// signRSA makes an RSA key (a session key unless onToken), signs a SHA-256
// DigestInfo with CKM_RSA_PKCS (every row has it; CKM_SHA256_RSA_PKCS is not
// everywhere) and checks the signature with crypto/rsa.
func signRSA(t *testing.T, ctx *pkcs11.Ctx, sh pkcs11.SessionHandle, onToken bool) {
	t.Helper()
	pub, priv, err := ctx.GenerateKeyPair(sh,
		[]*pkcs11.Mechanism{pkcs11.NewMechanism(pkcs11.CKM_RSA_PKCS_KEY_PAIR_GEN, nil)},
		[]*pkcs11.Attribute{
			pkcs11.NewAttribute(pkcs11.CKA_TOKEN, onToken),
			pkcs11.NewAttribute(pkcs11.CKA_VERIFY, true),
			pkcs11.NewAttribute(pkcs11.CKA_MODULUS_BITS, 2048),
			pkcs11.NewAttribute(pkcs11.CKA_PUBLIC_EXPONENT, []byte{1, 0, 1}),
		},
		[]*pkcs11.Attribute{
			pkcs11.NewAttribute(pkcs11.CKA_TOKEN, onToken),
			pkcs11.NewAttribute(pkcs11.CKA_PRIVATE, true),
			pkcs11.NewAttribute(pkcs11.CKA_SENSITIVE, true),
			pkcs11.NewAttribute(pkcs11.CKA_SIGN, true),
		})
	require.NoError(t, err, "RSA key pair")
	attrs, err := ctx.GetAttributeValue(sh, pub, []*pkcs11.Attribute{
		pkcs11.NewAttribute(pkcs11.CKA_MODULUS, nil),
		pkcs11.NewAttribute(pkcs11.CKA_PUBLIC_EXPONENT, nil),
	})
	require.NoError(t, err)
	key := &rsa.PublicKey{N: new(big.Int).SetBytes(attrs[0].Value), E: int(new(big.Int).SetBytes(attrs[1].Value).Int64())}
	digest := sha256.Sum256([]byte("hsmca token matrix"))
	prefix := []byte{0x30, 0x31, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x01, 0x05, 0x00, 0x04, 0x20}
	require.NoError(t, ctx.SignInit(sh, []*pkcs11.Mechanism{pkcs11.NewMechanism(pkcs11.CKM_RSA_PKCS, nil)}, priv))
	sig, err := ctx.Sign(sh, append(prefix, digest[:]...))
	require.NoError(t, err, "C_Sign RSA")
	require.NoError(t, rsa.VerifyPKCS1v15(key, crypto.SHA256, digest[:], sig))
	require.NoError(t, ctx.DestroyObject(sh, priv))
	require.NoError(t, ctx.DestroyObject(sh, pub))
}

func signECDSA(t *testing.T, ctx *pkcs11.Ctx, sh pkcs11.SessionHandle, onToken bool) {
	t.Helper()
	params, err := asn1.Marshal(asn1.ObjectIdentifier{1, 2, 840, 10045, 3, 1, 7})
	require.NoError(t, err)
	pub, priv, err := ctx.GenerateKeyPair(sh,
		[]*pkcs11.Mechanism{pkcs11.NewMechanism(pkcs11.CKM_EC_KEY_PAIR_GEN, nil)},
		[]*pkcs11.Attribute{
			pkcs11.NewAttribute(pkcs11.CKA_TOKEN, onToken),
			pkcs11.NewAttribute(pkcs11.CKA_VERIFY, true),
			pkcs11.NewAttribute(pkcs11.CKA_EC_PARAMS, params),
		},
		[]*pkcs11.Attribute{
			pkcs11.NewAttribute(pkcs11.CKA_TOKEN, onToken),
			pkcs11.NewAttribute(pkcs11.CKA_PRIVATE, true),
			pkcs11.NewAttribute(pkcs11.CKA_SENSITIVE, true),
			pkcs11.NewAttribute(pkcs11.CKA_SIGN, true),
		})
	require.NoError(t, err, "EC P-256 key pair")
	attrs, err := ctx.GetAttributeValue(sh, pub, []*pkcs11.Attribute{pkcs11.NewAttribute(pkcs11.CKA_EC_POINT, nil)})
	require.NoError(t, err)
	var point []byte
	_, err = asn1.Unmarshal(attrs[0].Value, &point)
	require.NoError(t, err)
	x, y := elliptic.Unmarshal(elliptic.P256(), point) //nolint:staticcheck // a raw point from the token
	require.NotNil(t, x)
	digest := sha256.Sum256([]byte("hsmca token matrix"))
	require.NoError(t, ctx.SignInit(sh, []*pkcs11.Mechanism{pkcs11.NewMechanism(pkcs11.CKM_ECDSA, nil)}, priv))
	sig, err := ctx.Sign(sh, digest[:])
	require.NoError(t, err, "C_Sign ECDSA")
	require.Len(t, sig, 64)
	key := &ecdsa.PublicKey{Curve: elliptic.P256(), X: x, Y: y}
	require.True(t, ecdsa.Verify(key, digest[:], new(big.Int).SetBytes(sig[:32]), new(big.Int).SetBytes(sig[32:])))
	require.NoError(t, ctx.DestroyObject(sh, priv))
	require.NoError(t, ctx.DestroyObject(sh, pub))
}

// TestP11KitKillRestart drops the p11-kit server under an open, logged-in
// session and brings it back on the same socket: calls fail while it is
// gone, and Finalize + Initialize + OpenSession + Login works again.
func TestP11KitKillRestart(t *testing.T) {
	srv := NewP11KitToken(t)
	srv.Setenv(t)
	tok := TokenSpec{Name: TokenP11Kit, Module: srv.Module, Label: srv.Label, PIN: srv.PIN}
	ctx, slot := openToken(t, tok)
	sh := login(t, ctx, slot, tok.PIN)
	_, err := ctx.GenerateRandom(sh, 8)
	require.NoError(t, err)
	require.Equal(t, 1, srv.Connections(), "one p11-kit remote per connection")

	for _, how := range []string{"kill", "stop"} {
		t.Logf("--- %s", how)
		if how == "kill" {
			srv.Kill()
		} else {
			srv.Stop()
		}
		require.False(t, srv.Running())
		_, err = ctx.GenerateRandom(sh, 8)
		require.Error(t, err, "a call on a session of a dead server")
		t.Logf("%s: C_GenerateRandom on the open session: %v", how, err)
		_, err = ctx.GetSessionInfo(sh)
		t.Logf("%s: C_GetSessionInfo: %v", how, err)
		_, err = ctx.GetSlotList(true)
		t.Logf("%s: C_GetSlotList: %v", how, err)
		_, err = ctx.OpenSession(slot, pkcs11.CKF_SERIAL_SESSION)
		t.Logf("%s: C_OpenSession: %v", how, err)

		// A new context while the server is gone.
		ctx2 := pkcs11.New(srv.Module)
		require.NotNil(t, ctx2)
		err = ctx2.Initialize()
		t.Logf("%s: C_Initialize of a new context, server down: %v", how, err)
		if err == nil {
			// The client takes a server it cannot reach for a module
			// without slots.
			slots, err := ctx2.GetSlotList(false)
			t.Logf("%s: C_GetSlotList of that context: %v %v", how, slots, err)
			require.Empty(t, slots)
			t.Logf("%s: C_Finalize of that context: %v", how, ctx2.Finalize())
		}
		ctx2.Destroy()

		srv.Start()
		_, err = ctx.GenerateRandom(sh, 8)
		t.Logf("%s: after restart, C_GenerateRandom on the old session: %v", how, err)
		require.Error(t, err, "the old connection does not come back")
		_, err = ctx.GetSlotList(true)
		t.Logf("%s: after restart, C_GetSlotList on the old context: %v", how, err)
		err = ctx.Initialize()
		t.Logf("%s: after restart, C_Initialize without C_Finalize: %v", how, err)
		err = ctx.Finalize()
		t.Logf("%s: after restart, C_Finalize: %v", how, err)
		require.NoError(t, ctx.Initialize(), "C_Initialize after C_Finalize reconnects")
		slot = findSlot(t, ctx, tok)
		// A new connection is a new p11-kit remote process: logged out.
		sh, err = ctx.OpenSession(slot, pkcs11.CKF_SERIAL_SESSION|pkcs11.CKF_RW_SESSION)
		require.NoError(t, err)
		require.NoError(t, ctx.Login(sh, pkcs11.CKU_USER, tok.PIN), "login again after a reconnect")
		_, err = ctx.GenerateRandom(sh, 8)
		require.NoError(t, err)
	}
	require.Equal(t, 3, srv.Starts())

	// A context initialised while the server is down has no slots, and
	// stays so when the server returns, until C_Finalize + C_Initialize.
	srv.Kill()
	require.NoError(t, ctx.Finalize())
	require.NoError(t, ctx.Initialize(), "C_Initialize with the server down succeeds")
	slots, err := ctx.GetSlotList(true)
	require.NoError(t, err)
	require.Empty(t, slots, "no slots while the server is down")
	srv.Start()
	slots, err = ctx.GetSlotList(true)
	t.Logf("server back, context initialised while it was down: C_GetSlotList %v %v", slots, err)
	require.Empty(t, slots, "no reconnect without C_Finalize + C_Initialize")
	require.NoError(t, ctx.Finalize())
	require.NoError(t, ctx.Initialize())
	require.Equal(t, slot, findSlot(t, ctx, tok), "the slot id survives a restart of the server")
}

// TestP11KitContextsDoNotShareLogin shows why an application must use one
// context: each pkcs11.New of the p11-kit client is a connection of its own
// to a p11-kit remote process of its own, with its own login state (an
// in-process module shares one library state between contexts instead).
func TestP11KitContextsDoNotShareLogin(t *testing.T) {
	srv := NewP11KitToken(t)
	srv.Setenv(t)
	tok := TokenSpec{Name: TokenP11Kit, Module: srv.Module, Label: srv.Label, PIN: srv.PIN}
	a, slot := openToken(t, tok)
	login(t, a, slot, tok.PIN)
	b, slotB := openToken(t, tok)
	require.Equal(t, slot, slotB)
	require.Equal(t, 2, srv.Connections(), "two contexts, two connections")
	sh, err := b.OpenSession(slotB, pkcs11.CKF_SERIAL_SESSION|pkcs11.CKF_RW_SESSION)
	require.NoError(t, err)
	si, err := b.GetSessionInfo(sh)
	require.NoError(t, err)
	require.Equal(t, uint(pkcs11.CKS_RW_PUBLIC_SESSION), si.State, "the login of the first context does not reach the second")
	require.NoError(t, b.Login(sh, pkcs11.CKU_USER, tok.PIN), "the second context logs in on its own")

	// Contrast: SoftHSM2 in this process shares one library state.
	sw := NewTokenSpec(t, TokenSoftHSM2)
	c, sslot := openToken(t, sw)
	login(t, c, sslot, sw.PIN)
	d := pkcs11.New(sw.Module)
	require.NotNil(t, d)
	defer d.Destroy()
	require.Equal(t, pkcs11.Error(pkcs11.CKR_CRYPTOKI_ALREADY_INITIALIZED), rv(d.Initialize()))
	sh2, err := d.OpenSession(sslot, pkcs11.CKF_SERIAL_SESSION|pkcs11.CKF_RW_SESSION)
	require.NoError(t, err)
	si, err = d.GetSessionInfo(sh2)
	require.NoError(t, err)
	require.Equal(t, uint(pkcs11.CKS_RW_USER_FUNCTIONS), si.State)
	require.NoError(t, d.CloseSession(sh2))
}

// TestP11KitPause stalls the server: a call blocks (it does not fail) until
// the server continues.
func TestP11KitPause(t *testing.T) {
	srv := NewP11KitToken(t)
	srv.Setenv(t)
	tok := TokenSpec{Name: TokenP11Kit, Module: srv.Module, Label: srv.Label, PIN: srv.PIN}
	ctx, slot := openToken(t, tok)
	sh := login(t, ctx, slot, tok.PIN)

	srv.Pause()
	require.True(t, srv.Paused())
	done := make(chan error, 1)
	go func() {
		_, err := ctx.GenerateRandom(sh, 8)
		done <- err
	}()
	select {
	case err := <-done:
		t.Fatalf("a call returned while the server was stopped: %v", err)
	case <-time.After(300 * time.Millisecond):
	}
	srv.Resume()
	require.False(t, srv.Paused())
	select {
	case err := <-done:
		require.NoError(t, err, "the stalled call completes once the server continues")
	case <-time.After(30 * time.Second):
		t.Fatal("the call did not complete after SIGCONT")
	}

	// A new connection to a paused server blocks in C_Initialize (the
	// kernel queues the connection; nobody answers).
	srv.Pause()
	ctx2 := pkcs11.New(srv.Module)
	require.NotNil(t, ctx2)
	defer ctx2.Destroy()
	go func() { done <- ctx2.Initialize() }()
	select {
	case err := <-done:
		t.Fatalf("C_Initialize returned while the server was stopped: %v", err)
	case <-time.After(300 * time.Millisecond):
	}
	srv.Resume()
	select {
	case err := <-done:
		require.NoError(t, err)
		require.Equal(t, slot, findSlot(t, ctx2, tok))
		require.NoError(t, ctx2.Finalize())
	case <-time.After(30 * time.Second):
		t.Fatal("C_Initialize did not complete after SIGCONT")
	}

	// Killing a paused server frees the blocked call with an error.
	srv.Pause()
	go func() {
		_, err := ctx.GenerateRandom(sh, 8)
		done <- err
	}()
	srv.Kill()
	select {
	case err := <-done:
		require.Error(t, err)
		t.Logf("a call blocked on a paused server that is then killed: %v", err)
	case <-time.After(30 * time.Second):
		t.Fatal("the call stayed blocked after the server was killed")
	}
}

// TestOpenCryptokiHolding checks how tests share opencryptoki's one soft
// token: tests of one process that hold it together share it, a later test
// gets a fresh one, and a test of another process waits until this process
// lets go.
func TestOpenCryptokiHolding(t *testing.T) {
	if os.Getenv("HSMCA_OCK_HELPER") != "" {
		o := NewOpenCryptoki(t)
		fmt.Printf("OCK-LABEL %s\n", o.Label)
		return
	}
	var (
		first string
		cmd   *exec.Cmd
		lines = make(chan string)
	)
	t.Run("hold", func(t *testing.T) {
		a := NewOpenCryptoki(t)
		b := NewOpenCryptoki(t)
		require.False(t, a.Shared)
		require.True(t, b.Shared, "a second holder in this process shares the token")
		require.Equal(t, a.Label, b.Label)
		require.Equal(t, a.PIN, b.PIN)
		require.NotEqual(t, a.PINFile, b.PINFile)
		require.True(t, strings.HasPrefix(a.Label, ockLabelPrefix))
		require.Len(t, a.PIN, 8)
		require.Len(t, a.SOPIN, 8)
		first = a.Label

		// Another test process waits while this test holds the token.
		cmd = exec.Command(os.Args[0], "-test.run=^TestOpenCryptokiHolding$", "-test.count=1", "-test.v")
		cmd.Env = append(os.Environ(), "HSMCA_OCK_HELPER=1")
		out, err := cmd.StdoutPipe()
		require.NoError(t, err)
		require.NoError(t, cmd.Start())
		go func() {
			sc := bufio.NewScanner(out)
			for sc.Scan() {
				lines <- sc.Text()
			}
			close(lines)
		}()
		for l := range lines {
			require.NotContains(t, l, "OCK-LABEL", "the other process got the token while this test held it")
			if strings.Contains(l, "waiting for the soft token") {
				break
			}
		}
	})
	// "hold" has ended and let go of the token: the other process gets it.
	require.NotNil(t, cmd)
	var got string
	for l := range lines {
		if rest, ok := strings.CutPrefix(l, "OCK-LABEL "); ok {
			got = rest
		}
	}
	require.NoError(t, cmd.Wait())
	require.NotEmpty(t, got)
	require.NotEqual(t, first, got, "the other process made a fresh token")

	c := NewOpenCryptoki(t)
	require.False(t, c.Shared)
	require.NotEqual(t, first, c.Label, "a later test gets a fresh token")
	ctx, slot := openToken(t, TokenSpec{Name: TokenOpenCryptoki, Module: c.Module, Label: c.Label, Slot: c.Slot, HasSlot: true})
	sh := login(t, ctx, slot, c.PIN)
	require.NoError(t, ctx.Logout(sh))
}

func TestMechanismName(t *testing.T) {
	require.Equal(t, "CKM_SHA256_RSA_PKCS", MechanismName(pkcs11.CKM_SHA256_RSA_PKCS))
	require.Equal(t, "CKM_EDDSA", MechanismName(0x1057))
	require.Equal(t, "CKM_0x80000001", MechanismName(0x80000001))
}
