package api_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/sha512"
	"crypto/x509"
	"encoding/asn1"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"math/big"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/hsmca/hsmca/internal/apitest"
	"github.com/hsmca/hsmca/signer"
	"github.com/hsmca/hsmca/signer/apig"
	"github.com/hsmca/hsmca/signer/keys"
	"github.com/hsmca/hsmca/store"
)

// keyJSON is a key as the API returns it.
type keyJSON struct {
	ID                string            `json:"id"`
	Label             string            `json:"label"`
	Algorithm         string            `json:"algorithm"`
	State             string            `json:"state"`
	Owner             string            `json:"owner"`
	Created           time.Time         `json:"created"`
	PublicKeyPEM      string            `json:"publicKeyPem"`
	PublicKeyJWK      map[string]string `json:"publicKeyJwk"`
	SigningAlgorithms []string          `json:"signingAlgorithms"`
}

func createKey(t *testing.T, env *apitest.Env, tok, alg string) keyJSON {
	t.Helper()
	r := env.Do("POST", "/v1/keys", tok, map[string]any{"algorithm": alg, "label": "test " + alg})
	require.Equal(t, http.StatusCreated, r.Status, string(r.Body))
	var k keyJSON
	r.JSON(t, &k)
	assert.Equal(t, "/v1/keys/"+k.ID, r.Header.Get("Location"))
	return k
}

// hsmKeyID is the CKA_ID of a key record.
func hsmKeyID(t *testing.T, env *apitest.Env, kind, tenant, id string) string {
	t.Helper()
	rec, err := env.Store.Get(context.Background(), kind, tenant, id)
	require.NoError(t, err)
	require.NotEmpty(t, rec.Fields[signer.KeyField])
	return rec.Fields[signer.KeyField]
}

var opensslHash = map[string]string{"256": "-sha256", "384": "-sha384", "512": "-sha512"}

// opensslVerify checks sig over msg with the openssl command line against
// the PEM the API returned. ECDSA signatures must be DER here.
func opensslVerify(t *testing.T, pubPEM, alg string, msg, sig []byte) {
	t.Helper()
	dir := t.TempDir()
	pub, m, s := filepath.Join(dir, "pub.pem"), filepath.Join(dir, "msg"), filepath.Join(dir, "sig")
	require.NoError(t, os.WriteFile(pub, []byte(pubPEM), 0o600))
	require.NoError(t, os.WriteFile(m, msg, 0o600))
	require.NoError(t, os.WriteFile(s, sig, 0o600))
	var args []string
	switch {
	case alg == "EdDSA":
		args = []string{"pkeyutl", "-verify", "-pubin", "-inkey", pub, "-rawin", "-in", m, "-sigfile", s}
	case strings.HasPrefix(alg, "PS"):
		// saltlen -1: the salt must be exactly the hash length.
		args = []string{"dgst", opensslHash[alg[2:]], "-sigopt", "rsa_padding_mode:pss", "-sigopt", "rsa_pss_saltlen:-1",
			"-verify", pub, "-signature", s, m}
	default:
		args = []string{"dgst", opensslHash[alg[2:]], "-verify", pub, "-signature", s, m}
	}
	out, err := exec.Command("openssl", args...).CombinedOutput()
	require.NoError(t, err, "openssl %s: %s", strings.Join(args, " "), out)
	require.Contains(t, string(out), "Verified", "openssl %s", strings.Join(args, " "))
}

func rawToDER(t *testing.T, raw []byte) []byte {
	t.Helper()
	require.Zero(t, len(raw)%2)
	n := len(raw) / 2
	der, err := asn1.Marshal(struct{ R, S *big.Int }{new(big.Int).SetBytes(raw[:n]), new(big.Int).SetBytes(raw[n:])})
	require.NoError(t, err)
	return der
}

func digestOf(alg string, msg []byte) []byte {
	switch {
	case strings.HasSuffix(alg, "384"):
		s := sha512.Sum384(msg)
		return s[:]
	case strings.HasSuffix(alg, "512"):
		s := sha512.Sum512(msg)
		return s[:]
	}
	s := sha256.Sum256(msg)
	return s[:]
}

func b64(b []byte) string { return base64.StdEncoding.EncodeToString(b) }

// checkJWK compares the JWK the API returned with the PEM.
func checkJWK(t *testing.T, k keyJSON) {
	t.Helper()
	blk, _ := pem.Decode([]byte(k.PublicKeyPEM))
	require.NotNil(t, blk, "publicKeyPem is PEM")
	pub, err := x509.ParsePKIXPublicKey(blk.Bytes)
	require.NoError(t, err)
	j := k.PublicKeyJWK
	dec := func(s string) []byte {
		b, err := base64.RawURLEncoding.DecodeString(s)
		require.NoError(t, err)
		return b
	}
	assert.Equal(t, k.ID, j["kid"])
	switch p := pub.(type) {
	case *ecdsa.PublicKey:
		assert.Equal(t, "EC", j["kty"])
		assert.Equal(t, p.Curve.Params().Name, j["crv"])
		size := (p.Curve.Params().BitSize + 7) / 8
		assert.Equal(t, p.X.FillBytes(make([]byte, size)), dec(j["x"]))
		assert.Equal(t, p.Y.FillBytes(make([]byte, size)), dec(j["y"]))
	case *rsa.PublicKey:
		assert.Equal(t, "RSA", j["kty"])
		assert.Equal(t, p.N.Bytes(), dec(j["n"]))
		assert.Equal(t, []byte{1, 0, 1}, dec(j["e"]))
	case ed25519.PublicKey:
		assert.Equal(t, "OKP", j["kty"])
		assert.Equal(t, "Ed25519", j["crv"])
		assert.Equal(t, []byte(p), dec(j["x"]))
	default:
		t.Fatalf("unexpected key type %T", pub)
	}
}

var keySigAlgs = map[string][]string{
	"EC256":   {"ES256"},
	"EC384":   {"ES384"},
	"EC521":   {"ES512"},
	"RSA2048": {"RS256", "RS384", "RS512", "PS256", "PS384", "PS512"},
	"RSA3072": {"RS256", "RS384", "RS512", "PS256", "PS384", "PS512"},
	"RSA4096": {"RS256", "RS384", "RS512", "PS256", "PS384", "PS512"},
	"ED25519": {"EdDSA"},
}

// TestKeysEveryAlgorithmSignsAndOpenSSLVerifies generates a key of every
// algorithm, signs messages and digests with every algorithm the key
// allows, and checks each signature with openssl against the PEM the API
// returned, and with the API's own verify. RSA-4096 is slow to generate in
// SoftHSM2, so it runs on the bolt backend only.
func TestKeysEveryAlgorithmSignsAndOpenSSLVerifies(t *testing.T) {
	if _, err := exec.LookPath("openssl"); err != nil {
		t.Fatal("openssl command line is required")
	}
	for _, backend := range apitest.Backends {
		t.Run(backend, func(t *testing.T) {
			env := apitest.New(t, backend)
			admin := env.NewToken("acme", "admin")
			signerTok := env.NewToken("acme", "signer")
			algs := []string{"EC256", "EC384", "EC521", "RSA2048", "RSA3072", "ED25519"}
			if backend == "bolt" {
				algs = append(algs, "RSA4096")
			}
			for _, alg := range algs {
				t.Run(alg, func(t *testing.T) {
					k := createKey(t, env, admin, alg)
					assert.Equal(t, alg, k.Algorithm)
					assert.Equal(t, "enabled", k.State)
					assert.Equal(t, "key", k.Owner)
					assert.Equal(t, "test "+alg, k.Label)
					assert.Equal(t, keySigAlgs[alg], k.SigningAlgorithms)
					checkJWK(t, k)

					sensitive, extractable, err := env.HSM.KeyAttributes(context.Background(), hsmKeyID(t, env, keys.RecordKey, "acme", k.ID))
					require.NoError(t, err)
					assert.True(t, sensitive, "CKA_SENSITIVE")
					assert.False(t, extractable, "CKA_EXTRACTABLE")

					r := env.Do("GET", "/v1/keys/"+k.ID, signerTok, nil)
					require.Equal(t, 200, r.Status, string(r.Body))
					var got keyJSON
					r.JSON(t, &got)
					assert.Equal(t, k, got)

					msg := []byte("hsmca signs " + alg)
					for _, sa := range keySigAlgs[alg] {
						body := map[string]any{"algorithm": sa, "message": b64(msg)}
						r := env.Do("POST", "/v1/keys/"+k.ID+"/sign", signerTok, body)
						require.Equal(t, 200, r.Status, "%s: %s", sa, r.Body)
						m := r.Map(t)
						assert.Equal(t, sa, m["algorithm"])
						assert.Equal(t, k.ID, m["keyId"])
						sig, err := base64.StdEncoding.DecodeString(m["signature"].(string))
						require.NoError(t, err)
						opensslVerify(t, k.PublicKeyPEM, sa, msg, sig)

						r = env.Do("POST", "/v1/keys/"+k.ID+"/verify", signerTok,
							map[string]any{"algorithm": sa, "message": b64(msg), "signature": b64(sig)})
						require.Equal(t, 200, r.Status, string(r.Body))
						assert.Equal(t, true, r.Map(t)["valid"], sa)
						r = env.Do("POST", "/v1/keys/"+k.ID+"/verify", signerTok,
							map[string]any{"algorithm": sa, "message": b64([]byte("another message")), "signature": b64(sig)})
						require.Equal(t, 200, r.Status, string(r.Body))
						assert.Equal(t, false, r.Map(t)["valid"], sa)

						if sa == "EdDSA" {
							continue
						}
						// The same through a digest computed by the client.
						r = env.Do("POST", "/v1/keys/"+k.ID+"/sign", signerTok,
							map[string]any{"algorithm": sa, "digest": b64(digestOf(sa, msg))})
						require.Equal(t, 200, r.Status, "%s: %s", sa, r.Body)
						sig, err = base64.StdEncoding.DecodeString(r.Map(t)["signature"].(string))
						require.NoError(t, err)
						opensslVerify(t, k.PublicKeyPEM, sa, msg, sig)

						if strings.HasPrefix(sa, "ES") {
							assert.Equal(t, "der", r.Map(t)["format"])
							// JWS form: r||s, which openssl reads once put back in DER.
							r = env.Do("POST", "/v1/keys/"+k.ID+"/sign", signerTok,
								map[string]any{"message": b64(msg), "format": "raw"})
							require.Equal(t, 200, r.Status, string(r.Body))
							m := r.Map(t)
							assert.Equal(t, "raw", m["format"])
							assert.Equal(t, sa, m["algorithm"], "the curve picks the algorithm")
							raw, err := base64.StdEncoding.DecodeString(m["signature"].(string))
							require.NoError(t, err)
							blk, _ := pem.Decode([]byte(k.PublicKeyPEM))
							pub, err := x509.ParsePKIXPublicKey(blk.Bytes)
							require.NoError(t, err)
							require.Len(t, raw, 2*((pub.(*ecdsa.PublicKey).Curve.Params().BitSize+7)/8))
							opensslVerify(t, k.PublicKeyPEM, sa, msg, rawToDER(t, raw))
							r = env.Do("POST", "/v1/keys/"+k.ID+"/verify", signerTok,
								map[string]any{"message": b64(msg), "format": "raw", "signature": b64(raw)})
							assert.Equal(t, true, r.Map(t)["valid"])
						}
					}
				})
			}

			// Every signature was observed under the signing histogram.
			r := env.Do("GET", "/metrics", "", nil)
			require.Equal(t, 200, r.Status)
			for _, alg := range algs {
				// A non-zero count: the EC256 series exists at 0 from the start.
				assert.Regexp(t, fmt.Sprintf(`hsmca_signing_duration_seconds_count\{key_algorithm=%q,operation="key_sign"\} [1-9]`, alg), string(r.Body))
			}
		})
	}
}

// errorOf decodes a native error envelope.
type errorOf struct {
	Code    string `json:"code"`
	Message string `json:"message"`
	Details []struct {
		Param    string `json:"param"`
		Msg      string `json:"msg"`
		Location string `json:"location"`
	} `json:"details"`
}

func nativeErr(t *testing.T, r *apitest.Response, status int, code, param string) errorOf {
	t.Helper()
	require.Equal(t, status, r.Status, string(r.Body))
	var e errorOf
	r.JSON(t, &e)
	assert.Equal(t, code, e.Code, string(r.Body))
	assert.NotEmpty(t, e.Message)
	if param != "" {
		require.NotEmpty(t, e.Details, string(r.Body))
		assert.Equal(t, param, e.Details[0].Param, string(r.Body))
	}
	return e
}

func TestKeysErrors(t *testing.T) {
	for _, backend := range apitest.Backends {
		t.Run(backend, func(t *testing.T) {
			env := apitest.New(t, backend)
			admin := env.NewToken("acme", "admin")
			signerTok := env.NewToken("acme", "signer")
			auditor := env.NewToken("acme", "auditor")
			other := env.NewToken("globex", "admin")
			ec := createKey(t, env, admin, "EC256")
			ed := createKey(t, env, admin, "ED25519")
			rsaKey := createKey(t, env, admin, "RSA2048")
			msg := b64([]byte("payload"))
			sign := func(tok, id string, body any) *apitest.Response {
				return env.Do("POST", "/v1/keys/"+id+"/sign", tok, body)
			}

			t.Run("create", func(t *testing.T) {
				nativeErr(t, env.Do("POST", "/v1/keys", admin, map[string]any{"algorithm": "DSA1024"}), 400, "BadRequest", "algorithm")
				nativeErr(t, env.Do("POST", "/v1/keys", admin, map[string]any{}), 400, "BadRequest", "algorithm")
				nativeErr(t, env.Do("POST", "/v1/keys", admin, map[string]any{"algorithm": "EC256", "colour": "red"}), 400, "BadRequest", "")
				nativeErr(t, env.Do("POST", "/v1/keys", admin, map[string]any{"algorithm": "EC256", "label": strings.Repeat("x", 129)}), 400, "BadRequest", "label")
				nativeErr(t, env.Do("POST", "/v1/keys", admin, `{"algorithm": 5}`), 400, "BadRequest", "algorithm")
				nativeErr(t, env.Do("POST", "/v1/keys", admin, `{"algorithm":`), 400, "BadRequest", "")
			})

			t.Run("unknown key", func(t *testing.T) {
				missing := uuid.NewString()
				for _, call := range []struct{ method, path string }{
					{"GET", ""}, {"POST", "/sign"}, {"POST", "/verify"}, {"POST", "/disable"}, {"POST", "/enable"}, {"DELETE", ""},
				} {
					var body any
					switch call.path {
					case "/sign":
						body = map[string]any{"message": msg}
					case "/verify":
						body = map[string]any{"message": msg, "signature": msg}
					}
					e := nativeErr(t, env.Do(call.method, "/v1/keys/"+missing+call.path, admin, body), 404, "NotFound", "")
					assert.Contains(t, e.Message, missing)
				}
			})

			t.Run("another tenant's key answers like a missing one", func(t *testing.T) {
				for _, call := range []struct{ method, path string }{
					{"GET", ""}, {"POST", "/sign"}, {"POST", "/disable"}, {"DELETE", ""},
				} {
					var body any
					if call.path == "/sign" {
						body = map[string]any{"message": msg}
					}
					theirs := env.Do(call.method, "/v1/keys/"+ec.ID+call.path, other, body)
					fake := uuid.NewString()
					missing := env.Do(call.method, "/v1/keys/"+fake+call.path, other, body)
					assert.Equal(t, missing.Status, theirs.Status)
					assert.Equal(t, strings.ReplaceAll(string(missing.Body), fake, ec.ID), string(theirs.Body))
				}
				r := env.Do("GET", "/v1/keys", other, nil)
				require.Equal(t, 200, r.Status)
				assert.Equal(t, `{"data":[]}`, string(r.Body))
				// And the key still works for its owner.
				require.Equal(t, 200, sign(signerTok, ec.ID, map[string]any{"message": msg}).Status)
			})

			t.Run("wrong algorithm for the key", func(t *testing.T) {
				for _, c := range []struct{ id, alg string }{
					{ec.ID, "ES384"}, {ec.ID, "RS256"}, {ec.ID, "EdDSA"}, {rsaKey.ID, "ES256"}, {rsaKey.ID, "EdDSA"}, {ed.ID, "PS256"},
				} {
					e := nativeErr(t, sign(signerTok, c.id, map[string]any{"algorithm": c.alg, "message": msg}), 400, "BadRequest", "algorithm")
					assert.Contains(t, e.Details[0].Msg, "does not fit the key")
				}
				nativeErr(t, sign(signerTok, ec.ID, map[string]any{"algorithm": "HS256", "message": msg}), 400, "BadRequest", "algorithm")
				nativeErr(t, env.Do("POST", "/v1/keys/"+ec.ID+"/verify", signerTok,
					map[string]any{"algorithm": "RS256", "message": msg, "signature": msg}), 400, "BadRequest", "algorithm")
			})

			t.Run("malformed base64", func(t *testing.T) {
				nativeErr(t, sign(signerTok, ec.ID, map[string]any{"message": "not base64!"}), 400, "BadRequest", "message")
				nativeErr(t, sign(signerTok, ec.ID, map[string]any{"digest": "%%%"}), 400, "BadRequest", "digest")
				nativeErr(t, env.Do("POST", "/v1/keys/"+ec.ID+"/verify", signerTok,
					map[string]any{"message": msg, "signature": "***"}), 400, "BadRequest", "signature")
			})

			t.Run("digest of the wrong length", func(t *testing.T) {
				e := nativeErr(t, sign(signerTok, ec.ID, map[string]any{"digest": b64(make([]byte, 20))}), 400, "BadRequest", "digest")
				assert.Contains(t, e.Details[0].Msg, "must be 32 bytes")
				nativeErr(t, sign(signerTok, rsaKey.ID, map[string]any{"algorithm": "RS512", "digest": b64(make([]byte, 32))}), 400, "BadRequest", "digest")
				// EdDSA signs messages only, and never an empty one.
				nativeErr(t, sign(signerTok, ed.ID, map[string]any{"digest": b64(make([]byte, 32))}), 400, "BadRequest", "digest")
				nativeErr(t, sign(signerTok, ed.ID, map[string]any{"message": ""}), 400, "BadRequest", "message")
			})

			t.Run("digest or message", func(t *testing.T) {
				nativeErr(t, sign(signerTok, ec.ID, map[string]any{}), 400, "BadRequest", "message")
				nativeErr(t, sign(signerTok, ec.ID, map[string]any{"message": msg, "digest": b64(make([]byte, 32))}), 400, "BadRequest", "digest")
				nativeErr(t, sign(signerTok, ec.ID, map[string]any{"message": msg, "format": "pem"}), 400, "BadRequest", "format")
				nativeErr(t, sign(signerTok, ec.ID, map[string]any{"message": msg, "signature": msg}), 400, "BadRequest", "signature")
				nativeErr(t, env.Do("POST", "/v1/keys/"+ec.ID+"/verify", signerTok, map[string]any{"message": msg}), 400, "BadRequest", "signature")
			})

			t.Run("roles", func(t *testing.T) {
				for _, c := range []struct {
					tok, method, path string
					body              any
				}{
					{signerTok, "POST", "/v1/keys", map[string]any{"algorithm": "EC256"}},
					{auditor, "POST", "/v1/keys", map[string]any{"algorithm": "EC256"}},
					{auditor, "POST", "/v1/keys/" + ec.ID + "/sign", map[string]any{"message": msg}},
					{auditor, "POST", "/v1/keys/" + ec.ID + "/verify", map[string]any{"message": msg, "signature": msg}},
					{signerTok, "POST", "/v1/keys/" + ec.ID + "/disable", nil},
					{signerTok, "POST", "/v1/keys/" + ec.ID + "/enable", nil},
					{signerTok, "DELETE", "/v1/keys/" + ec.ID, nil},
				} {
					nativeErr(t, env.Do(c.method, c.path, c.tok, c.body), 403, "Forbidden", "")
				}
				nativeErr(t, env.Do("GET", "/v1/keys", "", nil), 401, "Unauthorized", "")
				assert.Equal(t, 200, env.Do("GET", "/v1/keys/"+ec.ID, auditor, nil).Status, "auditors read public keys")
				assert.Equal(t, 200, env.Do("GET", "/v1/keys", auditor, nil).Status)
				assert.Equal(t, 200, sign(admin, ec.ID, map[string]any{"message": msg}).Status, "admins may sign")
			})

			t.Run("disabled key", func(t *testing.T) {
				r := env.Do("POST", "/v1/keys/"+ec.ID+"/disable", admin, nil)
				require.Equal(t, 200, r.Status, string(r.Body))
				var k keyJSON
				r.JSON(t, &k)
				assert.Equal(t, "disabled", k.State)
				e := nativeErr(t, sign(signerTok, ec.ID, map[string]any{"message": msg}), 409, "Conflict", "")
				assert.Contains(t, e.Message, "disabled")
				// Disabling again is harmless; verification still works.
				require.Equal(t, 200, env.Do("POST", "/v1/keys/"+ec.ID+"/disable", admin, nil).Status)
				r = env.Do("POST", "/v1/keys/"+ec.ID+"/verify", signerTok, map[string]any{"message": msg, "signature": msg})
				require.Equal(t, 200, r.Status, string(r.Body))
				assert.Equal(t, false, r.Map(t)["valid"])

				r = env.Do("POST", "/v1/keys/"+ec.ID+"/enable", admin, nil)
				require.Equal(t, 200, r.Status, string(r.Body))
				r.JSON(t, &k)
				assert.Equal(t, "enabled", k.State)
				assert.Equal(t, 200, sign(signerTok, ec.ID, map[string]any{"message": msg}).Status)
			})

			t.Run("delete destroys the key and frees the quota", func(t *testing.T) {
				ctx := context.Background()
				k := createKey(t, env, admin, "EC384")
				keyID := hsmKeyID(t, env, keys.RecordKey, "acme", k.ID)
				used, err := env.Store.QuotaUsage(ctx, "acme", keys.QuotaKeys)
				require.NoError(t, err)
				r := env.Do("DELETE", "/v1/keys/"+k.ID, admin, nil)
				require.Equal(t, 204, r.Status, string(r.Body))
				exists, err := env.HSM.Exists(ctx, keyID)
				require.NoError(t, err)
				assert.False(t, exists, "the HSM object is destroyed")
				after, err := env.Store.QuotaUsage(ctx, "acme", keys.QuotaKeys)
				require.NoError(t, err)
				assert.Equal(t, used-1, after)
				nativeErr(t, env.Do("GET", "/v1/keys/"+k.ID, admin, nil), 404, "NotFound", "")
				nativeErr(t, sign(signerTok, k.ID, map[string]any{"message": msg}), 404, "NotFound", "")
				nativeErr(t, env.Do("DELETE", "/v1/keys/"+k.ID, admin, nil), 404, "NotFound", "")
			})

			t.Run("list pages", func(t *testing.T) {
				var ids []string
				cursor := ""
				for pages := 0; ; pages++ {
					require.Less(t, pages, 10)
					path := "/v1/keys?limit=2"
					if cursor != "" {
						path += "&cursor=" + cursor
					}
					r := env.Do("GET", path, auditor, nil)
					require.Equal(t, 200, r.Status, string(r.Body))
					var page struct {
						Data       []keyJSON `json:"data"`
						NextCursor *string   `json:"nextCursor"`
					}
					r.JSON(t, &page)
					assert.LessOrEqual(t, len(page.Data), 2)
					for _, k := range page.Data {
						assert.NotEmpty(t, k.PublicKeyPEM)
						ids = append(ids, k.ID)
					}
					if page.NextCursor == nil {
						break
					}
					cursor = *page.NextCursor
				}
				assert.Equal(t, []string{ec.ID, ed.ID, rsaKey.ID}, ids, "creation order, every key once")
				nativeErr(t, env.Do("GET", "/v1/keys?limit=0", admin, nil), 400, "BadRequest", "limit")
				nativeErr(t, env.Do("GET", "/v1/keys?limit=1001", admin, nil), 400, "BadRequest", "limit")
				nativeErr(t, env.Do("GET", "/v1/keys?cursor=garbage", admin, nil), 400, "BadRequest", "cursor")
			})

			t.Run("events", func(t *testing.T) {
				evs, err := env.Engine.ListEvents(context.Background(), "acme", 0, 0)
				require.NoError(t, err)
				seen := map[string]bool{}
				for _, ev := range evs {
					seen[ev.Operation+"_"+ev.Outcome] = true
				}
				for _, want := range []string{"KEY_CREATE_SUCCESS", "KEY_CREATE_FAIL", "KEY_RETRIEVE_SUCCESS", "KEY_RETRIEVE_FAIL",
					"KEY_RETRIEVE_LIST_SUCCESS", "KEY_SIGN_SUCCESS", "KEY_SIGN_FAIL", "KEY_VERIFY_SUCCESS", "KEY_VERIFY_FAIL",
					"KEY_DISABLE_SUCCESS", "KEY_ENABLE_SUCCESS", "KEY_DELETE_SUCCESS", "KEY_DELETE_FAIL"} {
					assert.True(t, seen[want], want)
				}
				r := env.Do("GET", "/metrics", "", nil)
				assert.Regexp(t, `hsmca_events_total\{event="KEY_SIGN",stage="START"\} [1-9]`, string(r.Body))
			})
			assert.NotContains(t, env.Logs.String(), admin)
			assert.NotContains(t, env.Logs.String(), signerTok)
		})
	}
}

// TestKeysQuotaRace races 20 creations against a quota of 3: exactly 3
// succeed, the rest get 409, and the losers leave no HSM object behind.
func TestKeysQuotaRace(t *testing.T) {
	for _, backend := range apitest.Backends {
		t.Run(backend, func(t *testing.T) {
			env := apitest.New(t, backend, apitest.Options{Engine: func(o *signer.Options) {
				o.Quotas = map[string]int64{keys.QuotaKeys: 3}
			}})
			admin := env.NewToken("acme", "admin")
			var (
				wg       sync.WaitGroup
				mu       sync.Mutex
				statuses = map[int]int{}
			)
			for range 20 {
				wg.Add(1)
				go func() {
					defer wg.Done()
					r := env.Do("POST", "/v1/keys", admin, map[string]any{"algorithm": "EC256"})
					mu.Lock()
					statuses[r.Status]++
					mu.Unlock()
					if r.Status == 409 {
						assert.Equal(t, "Conflict", r.Map(t)["code"])
						assert.Contains(t, r.Map(t)["message"], "quota of 3 keys")
					}
				}()
			}
			wg.Wait()
			assert.Equal(t, map[int]int{201: 3, 409: 17}, statuses)

			ctx := context.Background()
			objs, err := env.HSM.List(ctx)
			require.NoError(t, err)
			assert.Len(t, objs, 3, "no HSM key left from the losers")
			ins, err := env.Store.ListIntents(ctx)
			require.NoError(t, err)
			assert.Empty(t, ins, "no intent left")
			used, err := env.Store.QuotaUsage(ctx, "acme", keys.QuotaKeys)
			require.NoError(t, err)
			assert.EqualValues(t, 3, used)

			// Another tenant has its own quota.
			other := env.NewToken("globex", "admin")
			createKey(t, env, other, "EC256")
		})
	}
}

// TestKeysOwnedByAPIGCertificate uses a key that an APIG certificate record
// owns: it signs through /v1/keys/{id}, follows the record's key_state, and
// cannot be disabled or deleted through the keys API.
func TestKeysOwnedByAPIGCertificate(t *testing.T) {
	for _, backend := range apitest.Backends {
		t.Run(backend, func(t *testing.T) {
			env := apitest.New(t, backend)
			ctx := signer.WithCaller(context.Background(), signer.Caller{Tenant: "acme", Principal: "ops:test"})
			admin := env.NewToken("acme", "admin")
			signerTok := env.NewToken("acme", "signer")

			priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
			require.NoError(t, err)
			id := strings.ReplaceAll(uuid.NewString(), "-", "")
			nk, err := env.Engine.ImportKey(ctx, "acme", apig.RecordCertificate, id, priv)
			require.NoError(t, err)
			rec := &store.Record{Kind: apig.RecordCertificate, Tenant: "acme", ID: id, Data: []byte(`{"name":"web"}`),
				Fields: map[string]string{signer.KeyField: nk.ID, signer.KeyAlgorithmField: "EC256"}}
			require.NoError(t, env.Store.Create(ctx, rec, store.WriteOpts{Intent: nk.Intent}))

			r := env.Do("GET", "/v1/keys/"+id, signerTok, nil)
			require.Equal(t, 200, r.Status, string(r.Body))
			var k keyJSON
			r.JSON(t, &k)
			assert.Equal(t, "apig_certificate", k.Owner)
			assert.Equal(t, "EC256", k.Algorithm)
			assert.Equal(t, "enabled", k.State)
			der, err := x509.MarshalPKIXPublicKey(&priv.PublicKey)
			require.NoError(t, err)
			assert.Equal(t, string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})), k.PublicKeyPEM)

			msg := []byte("through the keys API")
			r = env.Do("POST", "/v1/keys/"+id+"/sign", signerTok, map[string]any{"message": b64(msg)})
			require.Equal(t, 200, r.Status, string(r.Body))
			sig, err := base64.StdEncoding.DecodeString(r.Map(t)["signature"].(string))
			require.NoError(t, err)
			digest := sha256.Sum256(msg)
			assert.True(t, ecdsa.VerifyASN1(&priv.PublicKey, digest[:], sig))
			opensslVerify(t, k.PublicKeyPEM, "ES256", msg, sig)

			e := nativeErr(t, env.Do("POST", "/v1/keys/"+id+"/disable", admin, nil), 409, "Conflict", "")
			assert.Contains(t, e.Message, "APIG certificate")
			nativeErr(t, env.Do("DELETE", "/v1/keys/"+id, admin, nil), 409, "Conflict", "")
			exists, err := env.HSM.Exists(ctx, nk.ID)
			require.NoError(t, err)
			assert.True(t, exists)

			// The owning family disables it through key_state.
			rec, err = env.Store.Get(ctx, apig.RecordCertificate, "acme", id)
			require.NoError(t, err)
			rec.Fields[signer.KeyStateField] = signer.KeyStateDisabled
			require.NoError(t, env.Store.Update(ctx, rec, store.WriteOpts{}))
			nativeErr(t, env.Do("POST", "/v1/keys/"+id+"/sign", signerTok, map[string]any{"message": b64(msg)}), 409, "Conflict", "")

			// Not listed among the keys API's own keys.
			r = env.Do("GET", "/v1/keys", admin, nil)
			assert.Equal(t, `{"data":[]}`, string(r.Body))
		})
	}
}

// TestKeysDisableReachesEveryReplica: two daemons share Redis and the HSM
// token; a key disabled through one stops signing through the other at
// once, although the other has its signer cached.
func TestKeysDisableReachesEveryReplica(t *testing.T) {
	a := apitest.New(t, "redis")
	b := apitest.New(t, "redis", apitest.Options{Token: a.Token, Redis: a.Redis})
	admin := a.NewToken("acme", "admin")
	k := createKey(t, a, admin, "EC256")
	body := map[string]any{"message": b64([]byte("m"))}
	require.Equal(t, 200, b.Do("POST", "/v1/keys/"+k.ID+"/sign", admin, body).Status, "b caches the signer")

	require.Equal(t, 200, a.Do("POST", "/v1/keys/"+k.ID+"/disable", admin, nil).Status)
	nativeErr(t, b.Do("POST", "/v1/keys/"+k.ID+"/sign", admin, body), 409, "Conflict", "")
	require.Equal(t, 200, a.Do("POST", "/v1/keys/"+k.ID+"/enable", admin, nil).Status)
	require.Equal(t, 200, b.Do("POST", "/v1/keys/"+k.ID+"/sign", admin, body).Status)

	require.Equal(t, 204, a.Do("DELETE", "/v1/keys/"+k.ID, admin, nil).Status)
	nativeErr(t, b.Do("POST", "/v1/keys/"+k.ID+"/sign", admin, body), 404, "NotFound", "")

	// b signs a key it knows without reading its record first; the event
	// of each signature goes in only while the record is unchanged, so
	// the log holds exactly one record per answer: two successes, two
	// refusals, nothing for the signatures discarded.
	r := a.Do("GET", "/v1/events?operation=KEY_SIGN", admin, nil)
	require.Equal(t, 200, r.Status)
	var page struct {
		Events []struct {
			Outcome   string `json:"outcome"`
			ErrorCode string `json:"errorCode"`
		} `json:"data"`
	}
	require.NoError(t, json.Unmarshal(r.Body, &page))
	var got []string
	for _, e := range page.Events {
		got = append(got, e.Outcome+" "+e.ErrorCode)
	}
	assert.Equal(t, []string{"SUCCESS ", "FAIL wrong_state", "SUCCESS ", "FAIL not_found"}, got)
}
