package signer

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/hsmca/hsmca/hsm"
	"github.com/hsmca/hsmca/signer/issuance"
	"github.com/hsmca/hsmca/store"
)

// Event-log checkpoints.
//
// A checkpoint is the head of one tenant's event chain (sequence number
// and hash) at a time, signed in the HSM with the checkpoint key: one
// ECDSA P-256 key of the daemon (record kindCheckpointKey in the platform
// tenant, created through the key lifecycle like any other) with a
// self-signed certificate. Each checkpoint is announced by an
// EVENT_CHECKPOINT record in the tenant's chain, written first, so the
// checkpoint covers its own announcement. Kept outside hsmca, a checkpoint
// proves that the chain up to its sequence number has not been rewritten
// since: a rewrite of the newest records together with the chain head
// passes the chain's own check but not the checkpoint's (VerifyCheckpoint).

// EventCheckpoint is the operation name of the record that announces a
// checkpoint.
const EventCheckpoint = "EVENT_CHECKPOINT"

// CheckpointAlgorithm names the signature of checkpoints: ECDSA over
// P-256 with SHA-256 (JOSE's ES256), the signature ASN.1 DER encoded.
const CheckpointAlgorithm = "ES256"

const (
	kindCheckpoint    = "event_checkpoint"     // per tenant, id checkpointID(seq)
	kindCheckpointKey = "event_checkpoint_key" // platform tenant, id checkpointKeyID
	// RecordCheckpointKey is the record kind that owns the checkpoint key
	// (platform tenant), for checks that account for every HSM key.
	RecordCheckpointKey = kindCheckpointKey
	checkpointKeyID     = "current"
	checkpointVersion   = 1
)

// Checkpoint is one signed chain head.
type Checkpoint struct {
	Version   int       `json:"version"`
	Tenant    string    `json:"tenant"`
	Seq       uint64    `json:"seq"`
	Hash      string    `json:"hash"`
	Time      time.Time `json:"time"`
	Algorithm string    `json:"algorithm"`
	// KeyID is the hex SHA-256 of the checkpoint key's
	// SubjectPublicKeyInfo (DER).
	KeyID     string `json:"keyId"`
	Signature []byte `json:"signature"` // base64 in JSON
	// Certificate is the checkpoint key's certificate (PEM), so that a
	// checkpoint file can be checked on its own; who relies on it pins
	// the key (KeyID) once.
	Certificate string `json:"certificate"`
}

// SignedBytes is what the checkpoint key signs: five lines of ASCII, each
// ending in a line feed.
//
//	hsmca-event-checkpoint-v1
//	tenant=<tenant>
//	seq=<decimal>
//	hash=<hex chain hash of record seq>
//	time=<RFC 3339 UTC, nanoseconds, trailing zeros dropped>
func (cp *Checkpoint) SignedBytes() []byte {
	return fmt.Appendf(nil, "hsmca-event-checkpoint-v%d\ntenant=%s\nseq=%d\nhash=%s\ntime=%s\n",
		cp.Version, cp.Tenant, cp.Seq, cp.Hash, cp.Time.UTC().Format(time.RFC3339Nano))
}

// CheckpointKey is the public part of the checkpoint key.
type CheckpointKey struct {
	KeyID       string    `json:"keyId"`
	Algorithm   string    `json:"algorithm"`
	PublicKey   string    `json:"publicKey"`   // PEM SubjectPublicKeyInfo
	Certificate string    `json:"certificate"` // PEM, self-signed
	Created     time.Time `json:"created"`
}

type checkpointKeyRecord struct {
	CheckpointKey
	HSMKeyID string `json:"hsmKeyId"`
}

// PublicKeyID is the KeyID of a public key: the hex SHA-256 of its
// SubjectPublicKeyInfo.
func PublicKeyID(pub crypto.PublicKey) (string, error) {
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return "", err
	}
	sum := sha256.Sum256(der)
	return hex.EncodeToString(sum[:]), nil
}

// VerifyCheckpoint checks a checkpoint's signature with its certificate
// and, when pinned is not empty, that the certificate's key is the
// pinned one (a KeyID). It returns the certificate.
func VerifyCheckpoint(cp *Checkpoint, pinned string) (*x509.Certificate, error) {
	if cp.Version != checkpointVersion {
		return nil, fmt.Errorf("checkpoint version %d: want %d", cp.Version, checkpointVersion)
	}
	if cp.Algorithm != CheckpointAlgorithm {
		return nil, fmt.Errorf("checkpoint algorithm %q: want %s", cp.Algorithm, CheckpointAlgorithm)
	}
	b, _ := pem.Decode([]byte(cp.Certificate))
	if b == nil || b.Type != "CERTIFICATE" {
		return nil, errors.New("checkpoint certificate: not a PEM certificate")
	}
	cert, err := x509.ParseCertificate(b.Bytes)
	if err != nil {
		return nil, fmt.Errorf("checkpoint certificate: %w", err)
	}
	pub, ok := cert.PublicKey.(*ecdsa.PublicKey)
	if !ok {
		return nil, errors.New("checkpoint certificate: not an ECDSA key")
	}
	kid, err := PublicKeyID(pub)
	if err != nil {
		return nil, err
	}
	if kid != cp.KeyID {
		return nil, fmt.Errorf("checkpoint names key %s but its certificate holds key %s", cp.KeyID, kid)
	}
	if pinned != "" && pinned != kid {
		return nil, fmt.Errorf("checkpoint key %s is not the pinned key %s", kid, pinned)
	}
	sum := sha256.Sum256(cp.SignedBytes())
	if !ecdsa.VerifyASN1(pub, sum[:], cp.Signature) {
		return nil, errors.New("checkpoint signature does not verify")
	}
	return cert, nil
}

func checkpointID(seq uint64) string { return fmt.Sprintf("%020d", seq) }

// checkpointKeyMu serialises this process's creation of the checkpoint
// key; replicas race through the store (the second Create loses).
var checkpointKeyMu sync.Mutex

// CheckpointKeyInfo returns the checkpoint key, creating it (HSM key and
// self-signed certificate) the first time.
func (c *Core) CheckpointKeyInfo(ctx context.Context) (*CheckpointKey, error) {
	rec, _, err := c.checkpointKey(ctx, false)
	if err != nil {
		return nil, err
	}
	return &rec.CheckpointKey, nil
}

// checkpointKey returns the key record and, with sign, its HSM signer.
func (c *Core) checkpointKey(ctx context.Context, sign bool) (*checkpointKeyRecord, crypto.Signer, error) {
	load := func() (*checkpointKeyRecord, error) {
		r, err := c.store.Get(ctx, kindCheckpointKey, store.PlatformTenant, checkpointKeyID)
		if err != nil {
			return nil, err
		}
		var k checkpointKeyRecord
		if err := json.Unmarshal(r.Data, &k); err != nil {
			return nil, StoreErr(err, "checkpoint key")
		}
		return &k, nil
	}
	k, err := load()
	if errors.Is(err, store.ErrNotFound) {
		checkpointKeyMu.Lock()
		k, err = load()
		if errors.Is(err, store.ErrNotFound) {
			err = c.createCheckpointKey(ctx)
			if err == nil || errors.Is(err, store.ErrExists) {
				k, err = load()
			}
		}
		checkpointKeyMu.Unlock()
	}
	if err != nil {
		return nil, nil, StoreErr(err, "checkpoint key")
	}
	if !sign {
		return k, nil, nil
	}
	s, err := c.TimedSigner(ctx, k.HSMKeyID, "EC256", "event_checkpoint")
	if err != nil {
		return nil, nil, err
	}
	return k, s, nil
}

// createCheckpointKey makes the checkpoint key in the HSM (under an
// intent) and commits its record with a self-signed certificate.
func (c *Core) createCheckpointKey(ctx context.Context) error {
	nk, err := c.GenerateKey(ctx, store.PlatformTenant, kindCheckpointKey, checkpointKeyID, hsm.EC256)
	if err != nil {
		return err
	}
	pub := nk.Signer.Public()
	kid, err := PublicKeyID(pub)
	if err != nil {
		c.AbandonKey(nk)
		return err
	}
	now := c.now().UTC()
	tmpl := &x509.Certificate{
		Subject:               pkix.Name{CommonName: "hsmca event checkpoints", Organization: []string{"hsmca"}},
		NotBefore:             now.Add(-time.Minute),
		NotAfter:              now.AddDate(30, 0, 0),
		KeyUsage:              x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		SignatureAlgorithm:    x509.ECDSAWithSHA256,
	}
	der, err := issuance.SignCertificate(tmpl, nil, pub, c.Timed(nk.Signer, "event_checkpoint", "EC256"), issuance.KeyIDSHA256)
	if err != nil {
		c.AbandonKey(nk)
		return HSMError(err, "checkpoint key")
	}
	spki, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		c.AbandonKey(nk)
		return err
	}
	k := checkpointKeyRecord{CheckpointKey: CheckpointKey{KeyID: kid, Algorithm: CheckpointAlgorithm,
		PublicKey:   string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: spki})),
		Certificate: string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})),
		Created:     now}, HSMKeyID: nk.ID}
	data, _ := json.Marshal(k)
	rec := &store.Record{Kind: kindCheckpointKey, Tenant: store.PlatformTenant, ID: checkpointKeyID, Data: data}
	if err := c.CommitKey(ctx, rec, nk, store.WriteOpts{}); err != nil {
		return err
	}
	c.log.Info("event checkpoint key created", "key_id", kid)
	return nil
}

// CheckpointEvents signs the head of a tenant's event chain now: it
// writes the EVENT_CHECKPOINT record, reads the head (that record or a
// newer one), signs it with the checkpoint key and stores the checkpoint.
// The checkpoint is returned.
func (c *Core) CheckpointEvents(ctx context.Context, tenant string) (*Checkpoint, error) {
	if tenant == "" {
		tenant = store.PlatformTenant
	}
	op := c.Start(ctx, tenant, EventCheckpoint)
	k, s, err := c.checkpointKey(ctx, true)
	if err != nil {
		return nil, op.Done("", err)
	}
	// The announcing record is written before the head is read: the
	// checkpoint covers it. A signature that fails after it is recorded
	// as a second, failed EVENT_CHECKPOINT.
	if err := op.Done(k.KeyID, nil); err != nil {
		return nil, err
	}
	cp, err := c.signHead(ctx, tenant, k, s)
	if err != nil {
		return nil, c.Start(ctx, tenant, EventCheckpoint).Done(k.KeyID, err)
	}
	return cp, nil
}

func (c *Core) signHead(ctx context.Context, tenant string, k *checkpointKeyRecord, s crypto.Signer) (*Checkpoint, error) {
	seq, hash, err := c.eventHead(ctx, tenant)
	if err != nil {
		return nil, err
	}
	cp := &Checkpoint{Version: checkpointVersion, Tenant: tenant, Seq: seq, Hash: hash, Time: c.now().UTC(),
		Algorithm: CheckpointAlgorithm, KeyID: k.KeyID, Certificate: k.Certificate}
	sum := sha256.Sum256(cp.SignedBytes())
	sig, err := s.Sign(rand.Reader, sum[:], crypto.SHA256)
	if err != nil {
		return nil, HSMError(err, "checkpoint key")
	}
	cp.Signature = sig
	if _, err := VerifyCheckpoint(cp, k.KeyID); err != nil {
		return nil, &Error{Kind: KindInternal, Msg: "the checkpoint signature did not verify", Err: err}
	}
	data, _ := json.Marshal(cp)
	rec := &store.Record{Kind: kindCheckpoint, Tenant: tenant, ID: checkpointID(seq), Data: data}
	if err := c.store.Create(ctx, rec, store.WriteOpts{}); err != nil {
		if errors.Is(err, store.ErrExists) {
			// Another replica signed the same head: serve its checkpoint.
			return c.GetCheckpoint(ctx, tenant, seq)
		}
		return nil, StoreErr(err, "checkpoint")
	}
	return cp, nil
}

// eventHead reads the head of a tenant's chain from the store.
func (c *Core) eventHead(ctx context.Context, tenant string) (uint64, string, error) {
	h, ok := c.store.(EventHeader)
	if !ok {
		return 0, "", &Error{Kind: KindUnavailable, Msg: "the store cannot report the head of the event chain"}
	}
	seq, hash, err := h.EventHead(ctx, tenant)
	if err != nil {
		return 0, "", StoreErr(err, "event")
	}
	return seq, hash, nil
}

// GetCheckpoint returns the checkpoint of a tenant's chain at seq.
func (c *Core) GetCheckpoint(ctx context.Context, tenant string, seq uint64) (*Checkpoint, error) {
	r, err := c.store.Get(ctx, kindCheckpoint, tenant, checkpointID(seq))
	if err != nil {
		return nil, StoreErr(err, "checkpoint")
	}
	return decodeCheckpoint(r)
}

// LatestCheckpoint returns the newest checkpoint of a tenant's chain.
func (c *Core) LatestCheckpoint(ctx context.Context, tenant string) (*Checkpoint, error) {
	page, err := c.store.List(ctx, store.Query{Kind: kindCheckpoint, Tenant: tenant, Desc: true, Limit: 1})
	if err != nil {
		return nil, StoreErr(err, "checkpoint")
	}
	if len(page.Records) == 0 {
		return nil, &Error{Kind: KindNotFound, Msg: "no checkpoint of this tenant's event log yet"}
	}
	return decodeCheckpoint(&page.Records[0])
}

// ListCheckpoints returns a page of a tenant's checkpoints, newest first;
// cursor is the NextCursor of the previous page.
func (c *Core) ListCheckpoints(ctx context.Context, tenant string, limit int, cursor string) ([]Checkpoint, string, error) {
	if limit <= 0 {
		limit = 100
	}
	page, err := c.store.List(ctx, store.Query{Kind: kindCheckpoint, Tenant: tenant, Desc: true, Limit: limit, Cursor: cursor})
	if err != nil {
		if errors.Is(err, store.ErrInvalid) {
			return nil, "", QueryInvalid("cursor", cursor, "not a cursor of this list")
		}
		return nil, "", StoreErr(err, "checkpoint")
	}
	out := make([]Checkpoint, 0, len(page.Records))
	for i := range page.Records {
		cp, err := decodeCheckpoint(&page.Records[i])
		if err != nil {
			return nil, "", err
		}
		out = append(out, *cp)
	}
	return out, page.NextCursor, nil
}

func decodeCheckpoint(r *store.Record) (*Checkpoint, error) {
	var cp Checkpoint
	if err := json.Unmarshal(r.Data, &cp); err != nil {
		return nil, StoreErr(err, "checkpoint")
	}
	return &cp, nil
}

// CheckpointDue signs the head of every tenant's chain that moved since
// its last checkpoint (the daemon calls it every checkpoint interval) and
// returns how many checkpoints it made. A tenant whose chain ends with
// its last checkpoint's own record is left alone, so that an idle log
// does not grow by a record per interval.
func (c *Core) CheckpointDue(ctx context.Context) (int, error) {
	tenants, err := c.store.EventTenants(ctx)
	if err != nil {
		return 0, StoreErr(err, "event")
	}
	ctx = WithCaller(ctx, Caller{Principal: "system:checkpoint"})
	n := 0
	var errs []error
	for _, t := range tenants {
		if ctx.Err() != nil {
			break
		}
		seq, _, err := c.eventHead(ctx, t)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		last, err := c.LatestCheckpoint(ctx, t)
		if err == nil && last.Seq >= seq {
			continue
		}
		if err != nil && AsError(err).Kind != KindNotFound {
			errs = append(errs, err)
			continue
		}
		if _, err := c.CheckpointEvents(ctx, t); err != nil {
			errs = append(errs, fmt.Errorf("tenant %s: %w", t, err))
			continue
		}
		n++
	}
	return n, errors.Join(errs...)
}

// ParseCheckpointSeq checks a checkpoint's sequence number in a path.
func ParseCheckpointSeq(s string) (uint64, error) {
	n, err := strconv.ParseUint(s, 10, 64)
	if err != nil || n == 0 {
		return 0, Invalid("seq", s, "must be a positive integer")
	}
	return n, nil
}
