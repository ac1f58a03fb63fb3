package testenv

import (
	"fmt"

	"github.com/miekg/pkcs11"
)

// PKCS#11 3.0 values; miekg/pkcs11 v1.1.2 predates them.
const (
	ckmECEdwardsKeyPairGen    = 0x00001055
	ckmECMontgomeryKeyPairGen = 0x00001056
	ckmEdDSA                  = 0x00001057
)

// mechNames names the mechanisms a CA cares about, to log a token's list.
var mechNames = map[uint]string{
	pkcs11.CKM_RSA_PKCS_KEY_PAIR_GEN:   "CKM_RSA_PKCS_KEY_PAIR_GEN",
	pkcs11.CKM_RSA_PKCS:                "CKM_RSA_PKCS",
	pkcs11.CKM_RSA_X_509:               "CKM_RSA_X_509",
	pkcs11.CKM_RSA_PKCS_OAEP:           "CKM_RSA_PKCS_OAEP",
	pkcs11.CKM_RSA_PKCS_PSS:            "CKM_RSA_PKCS_PSS",
	pkcs11.CKM_RSA_X9_31_KEY_PAIR_GEN:  "CKM_RSA_X9_31_KEY_PAIR_GEN",
	pkcs11.CKM_MD5_RSA_PKCS:            "CKM_MD5_RSA_PKCS",
	pkcs11.CKM_SHA1_RSA_PKCS:           "CKM_SHA1_RSA_PKCS",
	pkcs11.CKM_SHA224_RSA_PKCS:         "CKM_SHA224_RSA_PKCS",
	pkcs11.CKM_SHA256_RSA_PKCS:         "CKM_SHA256_RSA_PKCS",
	pkcs11.CKM_SHA384_RSA_PKCS:         "CKM_SHA384_RSA_PKCS",
	pkcs11.CKM_SHA512_RSA_PKCS:         "CKM_SHA512_RSA_PKCS",
	pkcs11.CKM_SHA1_RSA_PKCS_PSS:       "CKM_SHA1_RSA_PKCS_PSS",
	pkcs11.CKM_SHA224_RSA_PKCS_PSS:     "CKM_SHA224_RSA_PKCS_PSS",
	pkcs11.CKM_SHA256_RSA_PKCS_PSS:     "CKM_SHA256_RSA_PKCS_PSS",
	pkcs11.CKM_SHA384_RSA_PKCS_PSS:     "CKM_SHA384_RSA_PKCS_PSS",
	pkcs11.CKM_SHA512_RSA_PKCS_PSS:     "CKM_SHA512_RSA_PKCS_PSS",
	pkcs11.CKM_DH_PKCS_KEY_PAIR_GEN:    "CKM_DH_PKCS_KEY_PAIR_GEN",
	pkcs11.CKM_DH_PKCS_DERIVE:          "CKM_DH_PKCS_DERIVE",
	pkcs11.CKM_EC_KEY_PAIR_GEN:         "CKM_EC_KEY_PAIR_GEN",
	pkcs11.CKM_ECDSA:                   "CKM_ECDSA",
	pkcs11.CKM_ECDSA_SHA1:              "CKM_ECDSA_SHA1",
	pkcs11.CKM_ECDSA_SHA224:            "CKM_ECDSA_SHA224",
	pkcs11.CKM_ECDSA_SHA256:            "CKM_ECDSA_SHA256",
	pkcs11.CKM_ECDSA_SHA384:            "CKM_ECDSA_SHA384",
	pkcs11.CKM_ECDSA_SHA512:            "CKM_ECDSA_SHA512",
	pkcs11.CKM_ECDH1_DERIVE:            "CKM_ECDH1_DERIVE",
	pkcs11.CKM_ECDH1_COFACTOR_DERIVE:   "CKM_ECDH1_COFACTOR_DERIVE",
	ckmECEdwardsKeyPairGen:             "CKM_EC_EDWARDS_KEY_PAIR_GEN",
	ckmECMontgomeryKeyPairGen:          "CKM_EC_MONTGOMERY_KEY_PAIR_GEN",
	ckmEdDSA:                           "CKM_EDDSA",
	pkcs11.CKM_AES_KEY_GEN:             "CKM_AES_KEY_GEN",
	pkcs11.CKM_AES_ECB:                 "CKM_AES_ECB",
	pkcs11.CKM_AES_CBC:                 "CKM_AES_CBC",
	pkcs11.CKM_AES_CBC_PAD:             "CKM_AES_CBC_PAD",
	pkcs11.CKM_AES_CTR:                 "CKM_AES_CTR",
	pkcs11.CKM_AES_CFB128:              "CKM_AES_CFB128",
	pkcs11.CKM_AES_GCM:                 "CKM_AES_GCM",
	pkcs11.CKM_AES_CCM:                 "CKM_AES_CCM",
	pkcs11.CKM_AES_CMAC:                "CKM_AES_CMAC",
	pkcs11.CKM_AES_CMAC_GENERAL:        "CKM_AES_CMAC_GENERAL",
	pkcs11.CKM_AES_MAC:                 "CKM_AES_MAC",
	pkcs11.CKM_AES_MAC_GENERAL:         "CKM_AES_MAC_GENERAL",
	pkcs11.CKM_AES_KEY_WRAP:            "CKM_AES_KEY_WRAP",
	pkcs11.CKM_AES_KEY_WRAP_PAD:        "CKM_AES_KEY_WRAP_PAD",
	pkcs11.CKM_AES_ECB_ENCRYPT_DATA:    "CKM_AES_ECB_ENCRYPT_DATA",
	pkcs11.CKM_AES_CBC_ENCRYPT_DATA:    "CKM_AES_CBC_ENCRYPT_DATA",
	pkcs11.CKM_DES_KEY_GEN:             "CKM_DES_KEY_GEN",
	pkcs11.CKM_DES_ECB:                 "CKM_DES_ECB",
	pkcs11.CKM_DES_CBC:                 "CKM_DES_CBC",
	pkcs11.CKM_DES_CBC_PAD:             "CKM_DES_CBC_PAD",
	pkcs11.CKM_DES3_KEY_GEN:            "CKM_DES3_KEY_GEN",
	pkcs11.CKM_DES3_ECB:                "CKM_DES3_ECB",
	pkcs11.CKM_DES3_CBC:                "CKM_DES3_CBC",
	pkcs11.CKM_DES3_CBC_PAD:            "CKM_DES3_CBC_PAD",
	pkcs11.CKM_DES3_CMAC:               "CKM_DES3_CMAC",
	pkcs11.CKM_MD5:                     "CKM_MD5",
	pkcs11.CKM_MD5_HMAC:                "CKM_MD5_HMAC",
	pkcs11.CKM_MD5_HMAC_GENERAL:        "CKM_MD5_HMAC_GENERAL",
	pkcs11.CKM_SHA_1:                   "CKM_SHA_1",
	pkcs11.CKM_SHA_1_HMAC:              "CKM_SHA_1_HMAC",
	pkcs11.CKM_SHA_1_HMAC_GENERAL:      "CKM_SHA_1_HMAC_GENERAL",
	pkcs11.CKM_SHA224:                  "CKM_SHA224",
	pkcs11.CKM_SHA224_HMAC:             "CKM_SHA224_HMAC",
	pkcs11.CKM_SHA224_HMAC_GENERAL:     "CKM_SHA224_HMAC_GENERAL",
	pkcs11.CKM_SHA256:                  "CKM_SHA256",
	pkcs11.CKM_SHA256_HMAC:             "CKM_SHA256_HMAC",
	pkcs11.CKM_SHA256_HMAC_GENERAL:     "CKM_SHA256_HMAC_GENERAL",
	pkcs11.CKM_SHA384:                  "CKM_SHA384",
	pkcs11.CKM_SHA384_HMAC:             "CKM_SHA384_HMAC",
	pkcs11.CKM_SHA384_HMAC_GENERAL:     "CKM_SHA384_HMAC_GENERAL",
	pkcs11.CKM_SHA512:                  "CKM_SHA512",
	pkcs11.CKM_SHA512_HMAC:             "CKM_SHA512_HMAC",
	pkcs11.CKM_SHA512_HMAC_GENERAL:     "CKM_SHA512_HMAC_GENERAL",
	pkcs11.CKM_GENERIC_SECRET_KEY_GEN:  "CKM_GENERIC_SECRET_KEY_GEN",
	pkcs11.CKM_SSL3_PRE_MASTER_KEY_GEN: "CKM_SSL3_PRE_MASTER_KEY_GEN",
	pkcs11.CKM_SSL3_MASTER_KEY_DERIVE:  "CKM_SSL3_MASTER_KEY_DERIVE",
	pkcs11.CKM_SSL3_KEY_AND_MAC_DERIVE: "CKM_SSL3_KEY_AND_MAC_DERIVE",
	pkcs11.CKM_SSL3_MD5_MAC:            "CKM_SSL3_MD5_MAC",
	pkcs11.CKM_DSA_KEY_PAIR_GEN:        "CKM_DSA_KEY_PAIR_GEN",
	pkcs11.CKM_DSA:                     "CKM_DSA",
	pkcs11.CKM_DSA_SHA1:                "CKM_DSA_SHA1",
	pkcs11.CKM_DSA_SHA224:              "CKM_DSA_SHA224",
	pkcs11.CKM_DSA_SHA256:              "CKM_DSA_SHA256",
	pkcs11.CKM_DSA_SHA384:              "CKM_DSA_SHA384",
	pkcs11.CKM_DSA_SHA512:              "CKM_DSA_SHA512",
	pkcs11.CKM_DSA_PARAMETER_GEN:       "CKM_DSA_PARAMETER_GEN",
	pkcs11.CKM_DH_PKCS_PARAMETER_GEN:   "CKM_DH_PKCS_PARAMETER_GEN",
	pkcs11.CKM_DES2_KEY_GEN:            "CKM_DES2_KEY_GEN",
	pkcs11.CKM_DES_ECB_ENCRYPT_DATA:    "CKM_DES_ECB_ENCRYPT_DATA",
	pkcs11.CKM_DES_CBC_ENCRYPT_DATA:    "CKM_DES_CBC_ENCRYPT_DATA",
	pkcs11.CKM_DES3_ECB_ENCRYPT_DATA:   "CKM_DES3_ECB_ENCRYPT_DATA",
	pkcs11.CKM_DES3_CBC_ENCRYPT_DATA:   "CKM_DES3_CBC_ENCRYPT_DATA",
	pkcs11.CKM_SSL3_SHA1_MAC:           "CKM_SSL3_SHA1_MAC",
}

// MechanismName names a mechanism (CKM_...), or prints its number in hex.
func MechanismName(m uint) string {
	if n, ok := mechNames[m]; ok {
		return n
	}
	return fmt.Sprintf("CKM_0x%08X", m)
}
