package metrics

import (
	"strconv"
	"strings"
)

// Every label value comes from a fixed set. A value that reaches the
// collectors from outside the program (an HTTP method, a path, a key a
// tenant imported, a return code of the HSM's vendor) is mapped into its
// set here, so no caller and no request can add a series:
//
//	label                  values
//	method                 the HTTP methods of httpMethods, else OTHER
//	route                  route templates the router registered (AllowRoutes), else "unmatched"
//	code (HTTP)            1xx .. 5xx, else "other"
//	key_algorithm          the names of keyAlgorithms, else RSA_OTHER or OTHER
//	function (PKCS#11)     the C_ functions of PKCS#11 v2.40, else OTHER
//	code (PKCS#11)         the CKR_ names of PKCS#11 v2.40 and the HSM layer's own, else OTHER
//
// The other labels (operation, event, stage, backend, store operation,
// component, resource, kind, version) are constants of the program.

// Other is the value of a label whose input is outside its set.
const Other = "OTHER"

// RouteUnmatched is the route label of a request no route template matched.
const RouteUnmatched = "unmatched"

// httpMethods are the methods of RFC 9110 and PATCH (RFC 5789): the only
// ones the router serves or answers 405 for.
var httpMethods = map[string]bool{
	"GET": true, "HEAD": true, "POST": true, "PUT": true, "PATCH": true,
	"DELETE": true, "OPTIONS": true, "CONNECT": true, "TRACE": true,
}

// KnownHTTPMethod reports whether m is one of the standard methods.
// Methods are case-sensitive: "get" is not GET.
func KnownHTTPMethod(m string) bool { return httpMethods[m] }

// HTTPMethod is the method label of m: m itself when known, else OTHER.
func HTTPMethod(m string) string {
	if httpMethods[m] {
		return m
	}
	return Other
}

// StatusClass is the code label of an HTTP status: "2xx" for 200 to 299,
// and so on; "other" outside 100 to 599.
func StatusClass(status int) string {
	if status < 100 || status > 599 {
		return "other"
	}
	return strconv.Itoa(status/100) + "xx"
}

// keyAlgorithms are the key types the HSM layer creates and imports.
var keyAlgorithms = map[string]bool{
	"EC256": true, "EC384": true, "EC521": true,
	"RSA2048": true, "RSA3072": true, "RSA4096": true,
	"ED25519": true,
}

// KeyAlgorithm is the key_algorithm label of an algorithm name: the
// hsm.Algorithm names as they are; "EC-P-256" and the like (the name of a
// curve) as the matching EC name; any other RSA size (an imported key of
// 2049 or 8192 bits) RSA_OTHER; anything else OTHER.
func KeyAlgorithm(name string) string {
	if keyAlgorithms[name] {
		return name
	}
	switch name {
	case "EC-P-256", "EC-P256", "P-256":
		return "EC256"
	case "EC-P-384", "EC-P384", "P-384":
		return "EC384"
	case "EC-P-521", "EC-P521", "P-521":
		return "EC521"
	case "Ed25519", "EdDSA":
		return "ED25519"
	}
	if bits, ok := strings.CutPrefix(name, "RSA"); ok && bits != "" && isDigits(bits) {
		return "RSA_OTHER"
	}
	return Other
}

func isDigits(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// hsmLayerCodes are the failures the HSM layer names itself (hsm.ErrorCode).
var hsmLayerCodes = []string{"timeout", "unavailable", "not_found", "other"}

// ckrNames are the return values of PKCS#11 v2.40, without the CKR_
// prefix. A vendor's own code (CKR_0x8000...) is OTHER.
const ckrNames = `OK CANCEL HOST_MEMORY SLOT_ID_INVALID GENERAL_ERROR FUNCTION_FAILED ARGUMENTS_BAD NO_EVENT
NEED_TO_CREATE_THREADS CANT_LOCK ATTRIBUTE_READ_ONLY ATTRIBUTE_SENSITIVE ATTRIBUTE_TYPE_INVALID
ATTRIBUTE_VALUE_INVALID ACTION_PROHIBITED DATA_INVALID DATA_LEN_RANGE DEVICE_ERROR DEVICE_MEMORY
DEVICE_REMOVED ENCRYPTED_DATA_INVALID ENCRYPTED_DATA_LEN_RANGE FUNCTION_CANCELED FUNCTION_NOT_PARALLEL
FUNCTION_NOT_SUPPORTED KEY_HANDLE_INVALID KEY_SIZE_RANGE KEY_TYPE_INCONSISTENT KEY_NOT_NEEDED
KEY_CHANGED KEY_NEEDED KEY_INDIGESTIBLE KEY_FUNCTION_NOT_PERMITTED KEY_NOT_WRAPPABLE
KEY_UNEXTRACTABLE MECHANISM_INVALID MECHANISM_PARAM_INVALID OBJECT_HANDLE_INVALID OPERATION_ACTIVE
OPERATION_NOT_INITIALIZED PIN_INCORRECT PIN_INVALID PIN_LEN_RANGE PIN_EXPIRED PIN_LOCKED
SESSION_CLOSED SESSION_COUNT SESSION_HANDLE_INVALID SESSION_PARALLEL_NOT_SUPPORTED
SESSION_READ_ONLY SESSION_EXISTS SESSION_READ_ONLY_EXISTS SESSION_READ_WRITE_SO_EXISTS
SIGNATURE_INVALID SIGNATURE_LEN_RANGE TEMPLATE_INCOMPLETE TEMPLATE_INCONSISTENT TOKEN_NOT_PRESENT
TOKEN_NOT_RECOGNIZED TOKEN_WRITE_PROTECTED UNWRAPPING_KEY_HANDLE_INVALID UNWRAPPING_KEY_SIZE_RANGE
UNWRAPPING_KEY_TYPE_INCONSISTENT USER_ALREADY_LOGGED_IN USER_NOT_LOGGED_IN USER_PIN_NOT_INITIALIZED
USER_TYPE_INVALID USER_ANOTHER_ALREADY_LOGGED_IN USER_TOO_MANY_TYPES WRAPPED_KEY_INVALID
WRAPPED_KEY_LEN_RANGE WRAPPING_KEY_HANDLE_INVALID WRAPPING_KEY_SIZE_RANGE
WRAPPING_KEY_TYPE_INCONSISTENT RANDOM_SEED_NOT_SUPPORTED RANDOM_NO_RNG DOMAIN_PARAMS_INVALID
CURVE_NOT_SUPPORTED BUFFER_TOO_SMALL SAVED_STATE_INVALID INFORMATION_SENSITIVE STATE_UNSAVEABLE
CRYPTOKI_NOT_INITIALIZED CRYPTOKI_ALREADY_INITIALIZED MUTEX_BAD MUTEX_NOT_LOCKED NEW_PIN_MODE
NEXT_OTP EXCEEDED_MAX_ITERATIONS FIPS_SELF_TEST_FAILED LIBRARY_LOAD_FAILED PIN_TOO_WEAK
PUBLIC_KEY_INVALID FUNCTION_REJECTED VENDOR_DEFINED`

// pkcs11Functions are the functions of PKCS#11 v2.40.
const pkcs11Functions = `Initialize Finalize GetInfo GetFunctionList GetSlotList GetSlotInfo GetTokenInfo
GetMechanismList GetMechanismInfo InitToken InitPIN SetPIN OpenSession CloseSession CloseAllSessions
GetSessionInfo GetOperationState SetOperationState Login Logout CreateObject CopyObject DestroyObject
GetObjectSize GetAttributeValue SetAttributeValue FindObjectsInit FindObjects FindObjectsFinal
EncryptInit Encrypt EncryptUpdate EncryptFinal DecryptInit Decrypt DecryptUpdate DecryptFinal
DigestInit Digest DigestUpdate DigestKey DigestFinal SignInit Sign SignUpdate SignFinal
SignRecoverInit SignRecover VerifyInit Verify VerifyUpdate VerifyFinal VerifyRecoverInit
VerifyRecover DigestEncryptUpdate DecryptDigestUpdate SignEncryptUpdate DecryptVerifyUpdate
GenerateKey GenerateKeyPair WrapKey UnwrapKey DeriveKey SeedRandom GenerateRandom
GetFunctionStatus CancelFunction WaitForSlotEvent`

var (
	hsmCodes     = map[string]bool{}
	hsmFunctions = map[string]bool{}
)

func init() {
	for _, n := range strings.Fields(ckrNames) {
		hsmCodes["CKR_"+n] = true
	}
	for _, c := range hsmLayerCodes {
		hsmCodes[c] = true
	}
	for _, f := range strings.Fields(pkcs11Functions) {
		hsmFunctions["C_"+f] = true
	}
}

// HSMErrorCode is the code label of a failed PKCS#11 call: a CKR_ name of
// the standard or one of the HSM layer's own names, else OTHER.
func HSMErrorCode(code string) string {
	if hsmCodes[code] {
		return code
	}
	return Other
}

// HSMFunction is the function label of a PKCS#11 call: a C_ function of
// the standard, else OTHER.
func HSMFunction(fn string) string {
	if hsmFunctions[fn] {
		return fn
	}
	return Other
}
