package hsm

import (
	"context"
	"crypto"
	"crypto/rand"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/hsmca/hsmca/internal/testenv"
)

func TestInitTokenAndListSlots(t *testing.T) {
	sh := testenv.NewSoftHSM(t)
	label := fmt.Sprintf("init-%d-%d", os.Getpid(), time.Now().UnixNano()%1e6)
	so, pin := "so-4711-pin", "user-0815-pin"

	id, err := InitToken(sh.Module, nil, label, so, pin)
	require.NoError(t, err)

	slots, err := ListSlots(sh.Module)
	require.NoError(t, err)
	var found *SlotInfo
	free := false
	for i, s := range slots {
		if s.Label == label {
			found = &slots[i]
		}
		if s.TokenPresent && !s.Initialized {
			free = true
		}
	}
	require.NotNil(t, found, "new token not listed: %+v", slots)
	assert.Equal(t, id, found.ID, "InitToken must report the slot the token lives in")
	assert.True(t, found.TokenPresent)
	assert.True(t, found.Initialized)
	assert.Equal(t, "SoftHSM project", found.Manufacturer)
	assert.NotEmpty(t, found.Serial)
	assert.True(t, free, "SoftHSM2 offers a free slot again")

	_, err = InitToken(sh.Module, nil, label, so, pin)
	assert.ErrorContains(t, err, "already exists")
	_, err = InitToken(sh.Module, &id, label+"-x", so, pin)
	assert.ErrorContains(t, err, "already initialised", "an initialised token is never erased")
	_, err = InitToken(sh.Module, nil, "", so, pin)
	assert.Error(t, err)
	_, err = InitToken(sh.Module, nil, "this label is much longer than thirty-two bytes", so, pin)
	assert.Error(t, err)

	// The user PIN works; the SO PIN is not the user's.
	h, err := Open(Config{Module: sh.Module, TokenLabel: label, PIN: pin})
	require.NoError(t, err)
	s, err := h.Generate(context.Background(), "k", "hsmca/test/k", EC256)
	require.NoError(t, err)
	signAndVerify(t, s)

	// Listing while a handle is open leaves the handle working.
	_, err = ListSlots(sh.Module)
	require.NoError(t, err)
	signAndVerify(t, s)
	require.NoError(t, h.Close())

	_, err = Open(Config{Module: sh.Module, TokenLabel: label, PIN: so})
	require.Error(t, err)
	assert.True(t, IsPINError(err), "%v", err)
}

// TestTwoHandles opens two tokens in one process: closing one must not
// finalise the library under the other, and neither may ListSlots.
func TestTwoHandles(t *testing.T) {
	tokA, tokB := testenv.NewToken(t), testenv.NewToken(t)
	ctx := context.Background()
	a := openConfig(t, config(t, tokA))
	b := openConfig(t, config(t, tokB))
	var signers []crypto.Signer
	for _, alg := range []Algorithm{EC256, ED25519} {
		s, err := b.Generate(ctx, "two-"+string(alg), "hsmca/test/two", alg)
		require.NoError(t, err)
		signers = append(signers, s)
	}
	_, err := a.Generate(ctx, "a-key", "hsmca/test/a", EC256)
	require.NoError(t, err)
	require.NoError(t, a.Close())
	slots, err := ListSlots(tokB.Module)
	require.NoError(t, err)
	assert.NotEmpty(t, slots)
	for _, s := range signers {
		signAndVerify(t, s)
	}
	require.NoError(t, b.Health(ctx))
}

func TestOpenErrors(t *testing.T) {
	tok := testenv.NewToken(t)
	wrong := "99" + tok.PIN
	_, err := Open(Config{Module: tok.Module, TokenLabel: tok.Label, PIN: wrong})
	require.Error(t, err)
	assert.True(t, IsPINError(err), "%v", err)
	assert.Equal(t, "CKR_PIN_INCORRECT", ErrorCode(err))
	assert.NotContains(t, err.Error(), wrong)
	assert.NotContains(t, err.Error(), tok.PIN)
	assert.Contains(t, err.Error(), tok.Label)

	_, err = Open(Config{Module: tok.Module, TokenLabel: "no-such-token", PIN: tok.PIN})
	require.Error(t, err)
	assert.Contains(t, err.Error(), `"no-such-token"`)
	assert.NotContains(t, err.Error(), tok.PIN)
	assert.False(t, IsPINError(err))

	_, err = Open(Config{Module: filepath.Join(t.TempDir(), "missing.so"), TokenLabel: tok.Label, PIN: tok.PIN})
	assert.ErrorContains(t, err, "missing.so")
	_, err = Open(Config{Module: tok.Module, PIN: tok.PIN})
	assert.Error(t, err)
	_, err = Open(Config{Module: tok.Module, TokenLabel: tok.Label})
	assert.Error(t, err)

	// After the failures the right PIN still opens the token.
	h := openConfig(t, config(t, tok))
	require.NoError(t, h.Health(context.Background()))
	s, err := h.Generate(context.Background(), "k", "hsmca/test/k", EC256)
	require.NoError(t, err)
	_, err = s.Sign(rand.Reader, []byte("not a digest"), crypto.SHA256)
	require.Error(t, err)
	assert.NotContains(t, err.Error(), tok.PIN)
}

func TestOpenBySlot(t *testing.T) {
	tok := testenv.NewToken(t)
	slots, err := ListSlots(tok.Module)
	require.NoError(t, err)
	var id *uint
	for _, s := range slots {
		if s.Label == tok.Label {
			id = &s.ID
		}
	}
	require.NotNil(t, id)
	h := openConfig(t, Config{Module: tok.Module, Slot: id, PIN: tok.PIN})
	ti, err := h.TokenInfo(context.Background())
	require.NoError(t, err)
	assert.Equal(t, tok.Label, ti.Label)
	assert.Equal(t, *id, ti.SlotID)
}

func TestReadPIN(t *testing.T) {
	dir := t.TempDir()
	write := func(name, body string, mode os.FileMode) string {
		p := filepath.Join(dir, name)
		require.NoError(t, os.WriteFile(p, []byte(body), mode))
		require.NoError(t, os.Chmod(p, mode))
		return p
	}
	for _, tc := range []struct {
		name, body, want string
	}{
		{"lf", "1234\n", "1234"},
		{"crlf", "1234\r\n", "1234"},
		{"bare", "12 34", "12 34"},
	} {
		got, err := ReadPIN(write(tc.name, tc.body, 0o600), "")
		require.NoError(t, err, tc.name)
		assert.Equal(t, tc.want, got, tc.name)
	}
	got, err := ReadPIN(write("world", "5678\n", 0o644), "")
	require.NoError(t, err, "a world-readable file is only warned about")
	assert.Equal(t, "5678", got)

	_, err = ReadPIN(write("empty", "\n", 0o600), "")
	assert.Error(t, err)
	_, err = ReadPIN(filepath.Join(dir, "absent"), "")
	assert.Error(t, err)
	_, err = ReadPIN(write("big", string(make([]byte, 4096)), 0o600), "")
	assert.Error(t, err)
	_, err = ReadPIN(dir, "")
	assert.Error(t, err)

	t.Setenv("HSMCA_TEST_PIN", "env-pin-42")
	got, err = ReadPIN("", "HSMCA_TEST_PIN")
	require.NoError(t, err)
	assert.Equal(t, "env-pin-42", got)
	got, err = ReadPIN(write("both", "file-pin\n", 0o600), "HSMCA_TEST_PIN")
	require.NoError(t, err)
	assert.Equal(t, "file-pin", got, "the file wins over the environment")

	t.Setenv("HSMCA_TEST_PIN", "")
	_, err = ReadPIN("", "HSMCA_TEST_PIN")
	assert.ErrorContains(t, err, "HSMCA_TEST_PIN")
	_, err = ReadPIN("", "")
	assert.Error(t, err)
}
