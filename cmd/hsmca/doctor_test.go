package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/miekg/pkcs11"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/hsmca/hsmca/hsm"
	"github.com/hsmca/hsmca/internal/testenv"
)

// noECToken reads like opencryptoki's soft token (RSA with PSS, AES
// without GCM, no EC), and wraps no secret (no AES-ECB either), with a
// session limit.
type noECToken struct{ max, open int }

func (noECToken) Capabilities() *hsm.Capabilities {
	m := func(code, lo, hi, flags uint) hsm.Mechanism {
		return hsm.Mechanism{Code: code, Name: hsm.MechanismName(code), MinKeySize: lo, MaxKeySize: hi, Flags: flags}
	}
	return &hsm.Capabilities{Mechanisms: []hsm.Mechanism{
		m(pkcs11.CKM_RSA_PKCS_KEY_PAIR_GEN, 512, 4096, pkcs11.CKF_GENERATE_KEY_PAIR),
		m(pkcs11.CKM_RSA_PKCS, 512, 4096, pkcs11.CKF_SIGN|pkcs11.CKF_VERIFY),
		m(pkcs11.CKM_RSA_PKCS_PSS, 1024, 4096, pkcs11.CKF_SIGN),
		m(pkcs11.CKM_DES3_CBC, 24, 24, pkcs11.CKF_ENCRYPT),
		m(pkcs11.CKM_AES_KEY_GEN, 16, 32, pkcs11.CKF_GENERATE),
	}}
}

func (noECToken) Supports(alg hsm.Algorithm) error {
	if strings.HasPrefix(string(alg), "RSA") {
		return nil
	}
	return &hsm.UnsupportedError{Feature: string(alg), Reason: "no CKM_EC_KEY_PAIR_GEN"}
}

func (noECToken) SupportsFeature(f string) error {
	if f == hsm.FeatureWrap {
		return &hsm.UnsupportedError{Feature: f, Reason: "no CKM_AES_GCM, and no CKM_AES_ECB for AES-CTR with HMAC-SHA256"}
	}
	return nil
}

func (n noECToken) TokenInfo(context.Context) (hsm.TokenInfo, error) {
	return hsm.TokenInfo{MaxSessions: n.max, Sessions: n.open, FreeSessions: n.max - n.open, PoolSize: 16}, nil
}

// The table of a token without EC or secret wrapping: its mechanisms hsmca uses
// (not the others), ✗ lines naming what is missing and what it costs, and
// a pool larger than the free sessions called out.
func TestDoctorTokenTable(t *testing.T) {
	var out bytes.Buffer
	failed := false
	report := func(name string, err error, detail string) bool {
		if err != nil {
			failed = true
			fmt.Fprintf(&out, "FAIL  %-16s %v\n", name, err)
			return false
		}
		fmt.Fprintf(&out, "ok    %-16s %s\n", name, detail)
		return true
	}
	tokenTable(context.Background(), noECToken{max: 10, open: 4}, &out, report)
	s := out.String()
	assert.False(t, failed, s)
	assert.Regexp(t, `(?m)^ok\s+mechanisms\s+the token lists 5; the 4 hsmca uses:$`, s)
	assert.Regexp(t, `(?m)^\s+CKM_RSA_PKCS\s+512-4096 bits\s+sign verify$`, s)
	assert.Regexp(t, `(?m)^\s+CKM_AES_KEY_GEN\s+16-32 bytes\s+generate$`, s)
	assert.NotContains(t, s, "CKM_0x", "mechanisms hsmca does not use are left out")
	assert.Regexp(t, `(?m)^ok\s+algorithms\s+RSA2048, RSA3072, RSA4096$`, s)
	assert.Regexp(t, `(?m)^\s+EC256\s+✗ no CKM_EC_KEY_PAIR_GEN$`, s)
	assert.Regexp(t, `(?m)^\s+RSA2048\s+✓$`, s)
	assert.Regexp(t, `(?m)^\s+RSA-PSS\s+✓$`, s)
	assert.Regexp(t, `(?m)^\s+secret wrapping\s+✗ no CKM_AES_GCM, and no CKM_AES_ECB for AES-CTR with HMAC-SHA256: `+
		`PCA certificates with a key made by hsmca and access keys refused$`, s)
	assert.Regexp(t, `(?m)^ok\s+sessions\s+token limit 10, open 4, free 6; hsmca's pool 16 \(more than the 6 the token has free: lower pool_size\)$`, s)
}

// noKeysToken offers no key algorithm at all.
type noKeysToken struct{ noECToken }

func (noKeysToken) Supports(alg hsm.Algorithm) error {
	return &hsm.UnsupportedError{Feature: string(alg), Reason: "no CKM_RSA_PKCS_KEY_PAIR_GEN"}
}

func TestDoctorTokenWithoutKeysFails(t *testing.T) {
	var out bytes.Buffer
	var failed []string
	tokenTable(context.Background(), noKeysToken{}, &out, func(name string, err error, _ string) bool {
		if err != nil {
			failed = append(failed, name+": "+err.Error())
		}
		return err == nil
	})
	assert.Equal(t, []string{"algorithms: the token offers none of the key algorithms hsmca uses"}, failed)
}

// On opencryptoki's soft token: no EC or Ed25519, RSA-PSS and secret
// wrapping (AES-CTR with an HMAC) there, an RSA2048 test signature, no
// session limit.
func TestDoctorOnOpenCryptoki(t *testing.T) {
	spec := testenv.NewTokenSpec(t, testenv.TokenOpenCryptoki)
	isolateModule(t, spec.Module, spec.Label, spec.PINFile)
	code, stdout, stderr := cli("doctor")
	require.Equal(t, 0, code, stdout+stderr)
	t.Log("\n" + stdout)
	assert.Regexp(t, `(?m)^ok\s+token\s+"`+spec.Label+`" in slot 3 \(IBM`, stdout)
	assert.Regexp(t, `(?m)^ok\s+test signature\s+RSA2048 key made, its signature verifies, key destroyed$`, stdout)
	assert.Regexp(t, `(?m)^\s+CKM_RSA_PKCS_PSS\s+1024-4096 bits\s+sign verify`, stdout)
	assert.NotRegexp(t, `(?m)^\s+CKM_EC`, stdout)
	assert.Regexp(t, `(?m)^ok\s+algorithms\s+RSA2048, RSA3072, RSA4096$`, stdout)
	assert.Regexp(t, `(?m)^\s+EC256\s+✗ no CKM_EC_KEY_PAIR_GEN$`, stdout)
	assert.Regexp(t, `(?m)^\s+ED25519\s+✗ no CKM_EC_EDWARDS_KEY_PAIR_GEN$`, stdout)
	assert.Regexp(t, `(?m)^\s+RSA-PSS\s+✓$`, stdout)
	assert.Regexp(t, `(?m)^\s+secret wrapping\s+✓$`, stdout)
	assert.Regexp(t, `(?m)^ok\s+sessions\s+token limit none, `, stdout)
	assert.NotContains(t, stdout+stderr, spec.PIN)
}

// The doctor names the Redis mode and shows the topology it sees, without
// a password; it fails when writes or a failover could not happen.
func TestDoctorRedisTopology(t *testing.T) {
	tok := testenv.NewToken(t)
	sen := testenv.StartSentinel(t, testenv.HAOptions{ACL: true})
	clu := testenv.StartCluster(t)
	pw := filepath.Join(t.TempDir(), "redis.pass")
	require.NoError(t, os.WriteFile(pw, []byte(sen.Auth.Password+"\n"), 0o600))
	spw := filepath.Join(t.TempDir(), "sentinel.pass")
	require.NoError(t, os.WriteFile(spw, []byte(sen.Auth.SentinelPassword+"\n"), 0o600))

	isolate(t, tok)
	t.Setenv("HSMCA_STORE", "redis")
	t.Setenv("HSMCA_REDIS_MODE", "sentinel")
	t.Setenv("HSMCA_REDIS_MASTER_NAME", sen.MasterName)
	t.Setenv("HSMCA_REDIS_ADDRS", strings.Join(sen.SentinelAddrs(), ","))
	t.Setenv("HSMCA_REDIS_USERNAME", sen.Auth.Username)
	t.Setenv("HSMCA_REDIS_PASSWORD_FILE", pw)
	t.Setenv("HSMCA_REDIS_SENTINEL_USERNAME", sen.Auth.SentinelUsername)
	t.Setenv("HSMCA_REDIS_SENTINEL_PASSWORD_FILE", spw)
	code, stdout, stderr := cli("doctor")
	require.Equal(t, 0, code, stdout+stderr)
	assert.Regexp(t, `(?m)^ok\s+store\s+redis answers$`, stdout)
	assert.Regexp(t, `(?m)^ok\s+redis\s+sentinel, master "hsmca-test" db 0 at `+regexp.QuoteMeta(sen.Data[0].Addr)+
		`, 2 replica\(s\); 3 of 3 sentinels answer; writes wait for every online replica of their master \(at least 1\), up to 500ms$`, stdout)
	assert.Regexp(t, `(?m)^\s+master\s+`+regexp.QuoteMeta(sen.Data[0].Addr)+`$`, stdout)
	for _, r := range sen.Data[1:] {
		assert.Regexp(t, `(?m)^\s+replica\s+`+regexp.QuoteMeta(r.Addr)+`\s+online, \d+ bytes behind, acknowledged \d+s ago$`, stdout)
	}
	for _, n := range sen.Sentinels {
		assert.Regexp(t, `(?m)^\s+sentinel\s+`+regexp.QuoteMeta(n.Addr)+`\s+names `+regexp.QuoteMeta(sen.Data[0].Addr)+
			` \(master\), knows 2 replica\(s\) and 2 other sentinel\(s\), quorum 2$`, stdout)
	}
	assert.NotContains(t, stdout+stderr, sen.Auth.Password)
	assert.NotContains(t, stdout+stderr, sen.Auth.SentinelPassword)

	// Waiting for more replicas than the master has: every write would
	// answer 503. Not waiting at all: said too.
	t.Setenv("HSMCA_REDIS_WAIT_REPLICAS", "3")
	code, stdout, _ = cli("doctor")
	assert.Equal(t, 1, code)
	assert.Regexp(t, `(?m)^FAIL\s+redis\s+master `+regexp.QuoteMeta(sen.Data[0].Addr)+
		` has 2 replica\(s\) connected and writes wait for 3: every write answers 503 until one is back`, stdout)
	t.Setenv("HSMCA_REDIS_WAIT_REPLICAS", "0")
	code, stdout, _ = cli("doctor")
	assert.Equal(t, 0, code)
	assert.Regexp(t, `(?m)^ok\s+redis\s+sentinel, .*; writes do not wait for replicas: a failover may lose acknowledged writes$`, stdout)
	t.Setenv("HSMCA_REDIS_WAIT_REPLICAS", "")

	// Two sentinels of three gone: too few to fail over.
	sen.Sentinels[0].Kill()
	sen.Sentinels[1].Kill()
	code, stdout, _ = cli("doctor")
	assert.Equal(t, 1, code)
	assert.Regexp(t, `(?m)^FAIL\s+redis\s+1 of 3 sentinels answer: too few to authorise a failover$`, stdout)

	// A standalone URL naming a replica.
	t.Setenv("HSMCA_REDIS_MODE", "standalone")
	t.Setenv("HSMCA_REDIS_MASTER_NAME", "")
	t.Setenv("HSMCA_REDIS_ADDRS", "")
	t.Setenv("HSMCA_REDIS_URL", "redis://"+sen.Data[1].Addr+"/0")
	code, stdout, _ = cli("doctor")
	assert.Equal(t, 1, code)
	assert.Regexp(t, `(?m)^FAIL\s+redis\s+`+regexp.QuoteMeta(sen.Data[1].Addr)+` is a replica \(role slave\), not a master`, stdout)

	// The cluster: its masters with their slots and replicas.
	t.Setenv("HSMCA_REDIS_URL", "")
	t.Setenv("HSMCA_REDIS_MODE", "cluster")
	t.Setenv("HSMCA_REDIS_ADDRS", clu.Addrs()[0])
	t.Setenv("HSMCA_REDIS_USERNAME", "")
	t.Setenv("HSMCA_REDIS_PASSWORD_FILE", "")
	t.Setenv("HSMCA_REDIS_SENTINEL_USERNAME", "")
	t.Setenv("HSMCA_REDIS_SENTINEL_PASSWORD_FILE", "")
	code, stdout, stderr = cli("doctor")
	require.Equal(t, 0, code, stdout+stderr)
	assert.Regexp(t, `(?m)^ok\s+redis\s+cluster, state ok, 16384 of 16384 slots served, 3 master\(s\), 3 replica\(s\); writes wait for every online replica of their master \(at least 1\), up to 500ms$`, stdout)
	masters, err := clu.Masters()
	require.NoError(t, err)
	for _, m := range masters {
		assert.Regexp(t, `(?m)^\s+master\s+`+regexp.QuoteMeta(m)+`\s+slots \d+-\d+$`, stdout)
	}
	assert.Equal(t, 3, strings.Count(stdout, " online, "), stdout)
}
