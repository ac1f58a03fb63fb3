package pca

import (
	"context"
	"crypto/x509"
	"crypto/x509/pkix"

	"github.com/hsmca/hsmca/signer"
	"github.com/hsmca/hsmca/signer/issuance"
)

// Name constraints at issuance (issuance.CheckNameConstraints): the chain
// they are read from is the tenant's, as far as the store holds it.

// constrainingChain is the issuer's certificate and those above it as far
// as the tenant stores them: an imported CA's supplied chain, or the
// tenant's CAs up to the root (also above an imported CA one of them
// issued, when it came without a chain). A CA purged from the store ends the walk.
func (s *Service) constrainingChain(ctx context.Context, tenant string, is *issuer) ([]*x509.Certificate, error) {
	chain := []*x509.Certificate{is.cert}
	c := is.ca
	for depth := 0; depth < 16; depth++ {
		if chainSupplied(c) {
			for _, der := range c.ExtChain {
				cert, err := s.issuerCerts.Get(der)
				if err != nil {
					return nil, signer.StoreErr(err, "CA chain")
				}
				chain = append(chain, cert)
			}
			break
		}
		if c.Type == CATypeRoot || c.IssuerID == "" {
			break
		}
		_, parent, err := getRecordVia(ctx, s, RecordCA, "CA", tenant, c.IssuerID, s.issuers.Get)
		if signer.KindOf(err) == signer.KindNotFound {
			break
		}
		if err != nil {
			return nil, err
		}
		cert, err := s.issuerCerts.Get(parent.Cert)
		if err != nil {
			return nil, signer.StoreErr(err, "CA certificate")
		}
		chain = append(chain, cert)
		c = parent
	}
	return chain, nil
}

// checkNameConstraints refuses names of a certificate to be signed by is
// that a certificate of is's chain does not permit, or excludes. subject
// is the subject to be signed and dnField its field in errors.
func (s *Service) checkNameConstraints(ctx context.Context, tenant string, is *issuer, names []issuance.IssuedName, subject pkix.RDNSequence, dnField string) error {
	chain, err := s.constrainingChain(ctx, tenant, is)
	if err != nil {
		return err
	}
	return checked(issuance.CheckNameConstraints(chain, names, subject, dnField))
}

// checkCANames applies the issuer's name constraints to a subordinate CA
// hsmca creates or activates: its subject, and its common name when that
// names a host.
func (s *Service) checkCANames(ctx context.Context, tenant string, is *issuer, dn DistinguishedName) error {
	return s.checkNameConstraints(ctx, tenant, is, issuance.NamesOf("", nil, "distinguished_name", dn.CommonName, nil),
		dn.PKIXName().ToRDNSequence(), "distinguished_name")
}
