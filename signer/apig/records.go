package apig

import (
	"crypto/x509"
	"encoding/json"
	"net"
	"time"

	"github.com/hsmca/hsmca/signer"
	"github.com/hsmca/hsmca/store"
)

// RecordCertificate is the store kind of a certificate record. It owns
// the certificate's HSM key by the key-owner conventions (signer.KeyField,
// signer.KeyAlgorithmField, signer.KeyStateField), so the keys API can
// sign with it under the certificate's id. The record keeps the
// certificates (DER), never the key. Its fields:
//
//	name, common_name, signature_algorithm, type, instance_id   the list filters
//	created                                                      the list order
//
// and its unique key is the name (nameKey).
const RecordCertificate = "apig_certificate"

// certData is the stored document: certificates only.
type certData struct {
	Name          string   `json:"name"`
	Type          string   `json:"type"`
	InstanceID    string   `json:"instanceId"`
	Chain         [][]byte `json:"chain"` // DER, leaf first, as sent
	TrustedRootCA [][]byte `json:"trustedRootCa,omitempty"`
}

// Certificate is an imported certificate as the API shows it, derived
// from the stored leaf certificate.
type Certificate struct {
	ID                 string
	Name               string
	Type               string
	InstanceID         string
	ProjectID          string
	CommonName         string
	SAN                []string // DNS names, then IP addresses
	NotBefore          time.Time
	NotAfter           time.Time
	SignatureAlgorithm string // Go's name, e.g. SHA256-RSA
	Created            time.Time
	Updated            time.Time
	HasTrustedRootCA   bool
	Version            int // X.509 version
	Organization       []string
	OrganizationalUnit []string
	Locality           []string
	State              []string
	Country            []string
	SerialNumber       string // decimal
	Issuer             []string
	KeyAlgorithm       string
	AlgorithmType      string // RSA or ECC, of the leaf's key
}

func nameKey(name string) string { return "name:" + name }

// createdFormat orders the created field as text.
const createdFormat = "20060102T150405.000000000"

// newRecord builds the stored record of a checked input, created at now.
func newRecord(tenant, id string, c *checked, keyID string, now time.Time) (*store.Record, error) {
	data, err := json.Marshal(&c.data)
	if err != nil {
		return nil, err
	}
	return &store.Record{Kind: RecordCertificate, Tenant: tenant, ID: id,
		Unique: []string{nameKey(c.data.Name)},
		Fields: map[string]string{
			signer.KeyField:          keyID,
			signer.KeyAlgorithmField: c.alg,
			"name":                   c.data.Name,
			"common_name":            c.leaf.Subject.CommonName,
			"signature_algorithm":    c.leaf.SignatureAlgorithm.String(),
			"type":                   c.data.Type,
			"instance_id":            c.data.InstanceID,
			"created":                now.UTC().Format(createdFormat),
		},
		Data: data}, nil
}

// view derives the API's view of a record from its leaf certificate.
func view(rec *store.Record) (*Certificate, error) {
	var d certData
	if err := json.Unmarshal(rec.Data, &d); err != nil {
		return nil, signer.StoreErr(err, "certificate")
	}
	if len(d.Chain) == 0 {
		return nil, internal("apig certificate record without a certificate")
	}
	leaf, err := x509.ParseCertificate(d.Chain[0])
	if err != nil {
		return nil, internal("stored apig certificate: %w", err)
	}
	san := make([]string, 0, len(leaf.DNSNames)+len(leaf.IPAddresses))
	san = append(san, leaf.DNSNames...)
	for _, ip := range leaf.IPAddresses {
		san = append(san, net.IP(ip).String())
	}
	issuer := leaf.Issuer.Organization
	if len(issuer) == 0 && leaf.Issuer.CommonName != "" {
		issuer = []string{leaf.Issuer.CommonName}
	}
	nonNil := func(s []string) []string {
		if s == nil {
			return []string{}
		}
		return s
	}
	return &Certificate{
		ID: rec.ID, Name: d.Name, Type: d.Type, InstanceID: d.InstanceID, ProjectID: rec.Tenant,
		CommonName: leaf.Subject.CommonName, SAN: san,
		NotBefore: leaf.NotBefore.UTC(), NotAfter: leaf.NotAfter.UTC(),
		SignatureAlgorithm: leaf.SignatureAlgorithm.String(),
		Created:            rec.Created.UTC(), Updated: rec.Updated.UTC(),
		HasTrustedRootCA: len(d.TrustedRootCA) > 0, Version: leaf.Version,
		Organization:       nonNil(leaf.Subject.Organization),
		OrganizationalUnit: nonNil(leaf.Subject.OrganizationalUnit),
		Locality:           nonNil(leaf.Subject.Locality),
		State:              nonNil(leaf.Subject.Province),
		Country:            nonNil(leaf.Subject.Country),
		SerialNumber:       leaf.SerialNumber.String(),
		Issuer:             nonNil(issuer),
		KeyAlgorithm:       rec.Fields[signer.KeyAlgorithmField],
		AlgorithmType:      algorithmTypeOf(leaf.PublicKeyAlgorithm),
	}, nil
}
