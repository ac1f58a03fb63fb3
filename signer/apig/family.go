// Package apig is API family 3, Huawei APIG v2 SSL certificates. A
// certificate is imported with its private key; the key goes into the HSM
// as a sensitive, non-extractable object owned by the certificate's record
// (RecordCertificate), so the keys API can sign with it under the
// certificate's id but cannot manage it.
package apig

import "github.com/hsmca/hsmca/signer"

// QuotaCertificates is the per-tenant quota resource of the certificates
// (default 1000).
const QuotaCertificates = "apig_certificates"

// Family declares the family to the core: its quota, and its certificates
// as owners of HSM keys that the keys API can use but not manage (the keys
// API searches the owners in registration order; keys registers first).
func Family() signer.Family {
	return signer.Family{
		Name:   "apig",
		Quotas: []signer.QuotaDefault{{Resource: QuotaCertificates, Default: 1000}},
		KeyOwners: []signer.KeyOwner{{RecordKind: RecordCertificate,
			Describe: "an APIG certificate; manage it through /v2/{project_id}/apigw/certificates"}},
	}
}
