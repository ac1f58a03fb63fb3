package hsm

import (
	"bytes"
	"context"
	"encoding/binary"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/miekg/pkcs11"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/hsmca/hsmca/internal/testenv"
)

// SweepRemnants must never touch an object anyone could use: keys with an
// id, keys with only a label, keys with neither but with key material,
// secret keys and data objects. (The shells it does destroy appear when a
// process is killed mid-creation; internal/chaos produces and checks them.)
func TestSweepRemnantsLeavesUsableObjects(t *testing.T) {
	tok, h := openToken(t)
	ctx := context.Background()
	_, err := h.Generate(ctx, "with-id", "hsmca/t/with-id", EC256)
	require.NoError(t, err)
	_, err = h.Generate(ctx, "rsa-id", "hsmca/t/rsa-id", RSA2048)
	require.NoError(t, err)
	require.NoError(t, h.EnsureWrappingKey(ctx, "wrap", "hsmca/t/wrap"))

	p, slot := secondHandle(t, tok)
	s, err := p.OpenSession(slot, pkcs11.CKF_SERIAL_SESSION|pkcs11.CKF_RW_SESSION)
	require.NoError(t, err)
	defer p.CloseSession(s)
	generateWithoutID(t, p, s, "")             // neither id nor label, but a curve and a point
	generateWithoutID(t, p, s, "someone-else") // another application's key, found by label
	_, err = p.CreateObject(s, []*pkcs11.Attribute{pkcs11.NewAttribute(pkcs11.CKA_CLASS, pkcs11.CKO_DATA),
		pkcs11.NewAttribute(pkcs11.CKA_TOKEN, true), pkcs11.NewAttribute(pkcs11.CKA_VALUE, []byte("data"))})
	require.NoError(t, err)

	before := countObjects(t, p, s)
	require.Equal(t, 10, before, "2+2 keys with ids, 1 wrapping key, 2+2 bare keys, 1 data object")

	n, err := h.SweepRemnants(ctx)
	require.NoError(t, err)
	assert.Zero(t, n)
	assert.Equal(t, before, countObjects(t, p, s), "nothing usable is destroyed")
	sig, err := h.Signer(ctx, "with-id")
	require.NoError(t, err)
	require.NoError(t, trySign(sig))
}

// A process killed right after SoftHSM2 created an object file leaves the
// file with no attribute at all, not even CKA_TOKEN, so SoftHSM2 takes it
// for a session object whose handle lives only as long as the session
// that found it. SweepRemnants must destroy it all the same.
func TestSweepRemnantsDestroysAnEmptyFile(t *testing.T) {
	tok, h := openToken(t)
	ctx := context.Background()
	_, err := h.Generate(ctx, "with-id", "hsmca/t/with-id", EC256)
	require.NoError(t, err)

	dir := tokenDir(t, tok)
	shell := filepath.Join(dir, "0a1b2c3d-0000-4000-8000-000000000001.object")
	// The object's generation and nothing else; SoftHSM2 creates the lock
	// file with the object.
	require.NoError(t, os.WriteFile(shell, []byte{0, 0, 0, 0, 0, 0, 0, 1}, 0o600))
	require.NoError(t, os.WriteFile(strings.TrimSuffix(shell, ".object")+".lock", nil, 0o600))
	bumpGeneration(t, dir)

	n, err := h.SweepRemnants(ctx)
	require.NoError(t, err)
	assert.Equal(t, 1, n)
	assert.NoFileExists(t, shell)
	sig, err := h.Signer(ctx, "with-id")
	require.NoError(t, err)
	require.NoError(t, trySign(sig))
}

// A kill between the steps of a key's creation has left SoftHSM2 holding
// a public key with hsmca's label, its curve and its point, but an empty
// CKA_ID: no intent can find it by id, so the sweep destroys it. The same
// key under another application's label stays (the test above).
func TestSweepRemnantsDestroysAnIDlessKeyUnderOwnLabel(t *testing.T) {
	_, h, p, s := tokenWithKey(t)
	ctx := context.Background()
	generateWithoutID(t, p, s, LabelPrefix+"t/cut-short")
	require.Equal(t, 4, countObjects(t, p, s))

	n, err := h.SweepRemnants(ctx)
	require.NoError(t, err)
	assert.Equal(t, 2, n, "both halves of the id-less pair")
	assert.Equal(t, 2, countObjects(t, p, s))
	stillSigns(t, h)
}

// generateWithoutID makes a P-256 pair on the token with no CKA_ID and,
// unless label is empty, that CKA_LABEL.
func generateWithoutID(t *testing.T, p *pkcs11.Ctx, s pkcs11.SessionHandle, label string) {
	t.Helper()
	curve, err := ecParams(EC256.curve())
	require.NoError(t, err)
	pub := []*pkcs11.Attribute{pkcs11.NewAttribute(pkcs11.CKA_TOKEN, true), pkcs11.NewAttribute(pkcs11.CKA_EC_PARAMS, curve)}
	priv := []*pkcs11.Attribute{pkcs11.NewAttribute(pkcs11.CKA_TOKEN, true), pkcs11.NewAttribute(pkcs11.CKA_PRIVATE, true)}
	if label != "" {
		pub = append(pub, pkcs11.NewAttribute(pkcs11.CKA_LABEL, label))
		priv = append(priv, pkcs11.NewAttribute(pkcs11.CKA_LABEL, label))
	}
	_, _, err = p.GenerateKeyPair(s, []*pkcs11.Mechanism{pkcs11.NewMechanism(pkcs11.CKM_EC_KEY_PAIR_GEN, nil)}, pub, priv)
	require.NoError(t, err)
}

// countObjects counts the objects session s sees.
func countObjects(t *testing.T, p *pkcs11.Ctx, s pkcs11.SessionHandle) int {
	t.Helper()
	require.NoError(t, p.FindObjectsInit(s, nil))
	hs, _, err := p.FindObjects(s, 1000)
	require.NoError(t, err)
	require.NoError(t, p.FindObjectsFinal(s))
	return len(hs)
}

// A kill between the steps of a key's creation has also left SoftHSM2
// holding a public key with its point but neither id, label nor curve
// (each an empty value): no application can use a point without its curve,
// and no PKCS#11 token makes an EC key without one, so the sweep destroys
// it. The private half of the same pair, whose curve is there, stays.
func TestSweepRemnantsDestroysAPointWithoutItsCurve(t *testing.T) {
	tok, h, p, s := tokenWithKey(t)
	ctx := context.Background()
	generateWithoutID(t, p, s, "")
	require.Equal(t, 4, countObjects(t, p, s))

	// Empty the public key's CKA_EC_PARAMS in its file, as the kill left it:
	// SoftHSM2 writes an attribute as its type, its kind (3: bytes), the
	// length and the value, each number in 8 bytes, and begins the file
	// with the object's generation, which it checks before using its copy.
	curve, err := ecParams(EC256.curve())
	require.NoError(t, err)
	num := func(v uint64) []byte { return binary.BigEndian.AppendUint64(nil, v) }
	attr := func(value []byte) []byte {
		b := append(append(num(pkcs11.CKA_EC_PARAMS), num(3)...), num(uint64(len(value)))...)
		return append(b, value...)
	}
	dir := tokenDir(t, tok)
	files, err := filepath.Glob(filepath.Join(dir, "*.object"))
	require.NoError(t, err)
	cut := 0
	for _, f := range files {
		b, err := os.ReadFile(f)
		require.NoError(t, err)
		if !bytes.Contains(b, attr(curve)) || bytes.Contains(b, []byte(LabelPrefix)) {
			continue // a private key's curve is enciphered; the key with an id keeps its own
		}
		b = bytes.Replace(b, attr(curve), attr(nil), 1)
		binary.BigEndian.PutUint64(b, binary.BigEndian.Uint64(b)+1)
		require.NoError(t, os.WriteFile(f, b, 0o600))
		cut++
	}
	require.Equal(t, 1, cut, "the id-less public key's file")
	bumpGeneration(t, dir)

	n, err := h.SweepRemnants(ctx)
	require.NoError(t, err)
	assert.Equal(t, 1, n, "the point without its curve, not the private half")
	assert.Equal(t, 3, countObjects(t, p, s))
	stillSigns(t, h)
}

// tokenWithKey opens a token whose HSM has made one key, "with-id", and a
// second handle's read-write session on it (closed with the test).
func tokenWithKey(t *testing.T) (*testenv.Token, *HSM, *pkcs11.Ctx, pkcs11.SessionHandle) {
	t.Helper()
	tok, h := openToken(t)
	_, err := h.Generate(context.Background(), "with-id", LabelPrefix+"t/with-id", EC256)
	require.NoError(t, err)
	p, slot := secondHandle(t, tok)
	s, err := p.OpenSession(slot, pkcs11.CKF_SERIAL_SESSION|pkcs11.CKF_RW_SESSION)
	require.NoError(t, err)
	t.Cleanup(func() { p.CloseSession(s) })
	return tok, h, p, s
}

// stillSigns checks that the sweep left the key "with-id" usable.
func stillSigns(t *testing.T, h *HSM) {
	t.Helper()
	sig, err := h.Signer(context.Background(), "with-id")
	require.NoError(t, err)
	require.NoError(t, trySign(sig))
}
