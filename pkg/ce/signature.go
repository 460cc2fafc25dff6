package ce

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"strings"
)

// SignatureHeader is the header in which CE sends the signature of a
// callback body.
const SignatureHeader = "Elements-Webhook-Signature"

const signaturePrefix = "sha256="

// Sign returns the Elements-Webhook-Signature value for body under key:
// "sha256=" followed by the standard, padded base64 encoding of
// HMAC-SHA256(key, body).
func Sign(body, key []byte) string {
	mac := hmac.New(sha256.New, key)
	mac.Write(body)
	return signaturePrefix + base64.StdEncoding.EncodeToString(mac.Sum(nil))
}

// ValidateSignature checks sig, the Elements-Webhook-Signature header of a
// CE callback, against the raw request body and the instance's
// "event.notification.signature.key". Surrounding white space in sig is
// ignored; the comparison takes constant time (hmac.Equal).
//
// It returns nil for a valid signature, ErrSignatureMissing for an empty
// header, ErrSignatureMalformed for a value that is not "sha256=" plus the
// padded standard base64 of 32 bytes, and ErrSignatureMismatch otherwise;
// all three match ErrSignatureInvalid. An empty key returns
// ErrNoSignatureKey: accepting signatures made with an empty key would let
// anyone sign.
func ValidateSignature(sig string, body, key []byte) error {
	if len(key) == 0 {
		return ErrNoSignatureKey
	}
	sig = strings.TrimSpace(sig)
	if sig == "" {
		return ErrSignatureMissing
	}
	encoded, ok := strings.CutPrefix(sig, signaturePrefix)
	if !ok {
		return ErrSignatureMalformed
	}
	got, err := base64.StdEncoding.Strict().DecodeString(encoded)
	if err != nil || len(got) != sha256.Size {
		return ErrSignatureMalformed
	}
	mac := hmac.New(sha256.New, key)
	mac.Write(body)
	if !hmac.Equal(got, mac.Sum(nil)) {
		return ErrSignatureMismatch
	}
	return nil
}
