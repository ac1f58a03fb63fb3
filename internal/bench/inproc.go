package bench

import (
	"context"
	"crypto"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"math/big"
	"os"
	"time"

	"github.com/hsmca/hsmca/signer/encoding"
	"github.com/hsmca/hsmca/signer/issuance"
)

// withOwnCPU runs m and reports the CPU time this process (the HSM
// library included) spent per operation in the measured window.
func withOwnCPU(p Phase, m func() Result) Result {
	done := make(chan time.Duration, 1)
	go func() {
		time.Sleep(p.Warmup)
		c0 := cpuTime(os.Getpid())
		time.Sleep(p.Duration)
		done <- cpuTime(os.Getpid()) - c0
	}()
	r := m()
	if cpu := <-done; r.Ops > 0 {
		r.CPUPerOp = cpu / time.Duration(r.Ops)
	}
	return r
}

// signLimit measures the HSM alone: the key's HSM signer signing a
// 32-byte SHA-256 digest, in n goroutines.
func signLimit(ctx context.Context, s crypto.Signer, n int, p Phase) Result {
	digest := sha256.Sum256([]byte("hsmca bench"))
	r := withOwnCPU(p, func() Result {
		return measure(ctx, n, p, func(context.Context, int) error {
			_, err := s.Sign(rand.Reader, digest[:], crypto.SHA256)
			return err
		}, nil)
	})
	r.Op = "in-process sign (HSM signer, digest)"
	return r
}

// issueLimit measures certificate issuance without HTTP, store or events:
// x509.CreateCertificate of a template built from a CSR parsed and
// verified beforehand, signed by the CA's HSM key, in n goroutines.
func issueLimit(ctx context.Context, caCert *x509.Certificate, caKey crypto.Signer, csr *x509.CertificateRequest, n int, p Phase) Result {
	r := withOwnCPU(p, func() Result {
		return measure(ctx, n, p, func(context.Context, int) error {
			serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 159))
			if err != nil {
				return err
			}
			now := time.Now().Truncate(time.Second)
			tmpl := &x509.Certificate{
				SerialNumber: serial, RawSubject: csr.RawSubject, DNSNames: csr.DNSNames,
				NotBefore: now, NotAfter: now.Add(30 * 24 * time.Hour),
				BasicConstraintsValid: true, KeyUsage: x509.KeyUsageDigitalSignature,
				ExtKeyUsage:        []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
				SignatureAlgorithm: x509.ECDSAWithSHA256,
			}
			_, err = x509.CreateCertificate(rand.Reader, tmpl, caCert, csr.PublicKey, caKey)
			return err
		}, nil)
	})
	r.Op = "in-process issue (x509.CreateCertificate)"
	return r
}

// OpCSRCheck is the in-process row of a CSR's parse and check alone.
const OpCSRCheck = "in-process CSR parse and check (PEM, DER, signature)"

// csrCheckRow measures what an issuance from a CSR does before any
// template or signature and the in-process issue row does not: the CSR
// read from its PEM text and parsed, and its signature verified (proof of
// possession of its key), as the daemon does them, in n goroutines.
func csrCheckRow(ctx context.Context, csrPEM string, n int, p Phase) Result {
	r := withOwnCPU(p, func() Result {
		return measure(ctx, n, p, func(context.Context, int) error {
			csr, err := encoding.ParseCSR(csrPEM)
			if err != nil {
				return err
			}
			_, _, err = issuance.CheckCSR("csr", csr)
			return err
		}, nil)
	})
	r.Op = OpCSRCheck
	return r
}
