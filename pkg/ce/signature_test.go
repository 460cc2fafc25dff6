package ce

import (
	"errors"
	"testing"
)

// The documented CE test vector (reference §3.3).
const (
	vectorKey  = "MySecretEventSignatureKey"
	vectorBody = "<INSERT_EVENT_NOTIFICATION_RESPONSE_BODY>"
	vectorSig  = "sha256=jHdbRx5EZAsOfTwAPJOGkNUzQMVVdu5VJlxcsk+G6jQ="
)

func TestSign(t *testing.T) {
	if got := Sign([]byte(vectorBody), []byte(vectorKey)); got != vectorSig {
		t.Errorf("Sign(vector) = %q, want %q", got, vectorSig)
	}
}

func TestValidateSignature(t *testing.T) {
	body, key := []byte(vectorBody), []byte(vectorKey)
	tests := []struct {
		name string
		sig  string
		body []byte
		key  []byte
		want error // nil: valid
	}{
		{"documented vector", vectorSig, body, key, nil},
		{"surrounding space", "  " + vectorSig + "\n", body, key, nil},
		{"missing", "", body, key, ErrSignatureMissing},
		{"blank", "   ", body, key, ErrSignatureMissing},
		{"sha1 prefix", "sha1=jHdbRx5EZAsOfTwAPJOGkNUzQMVVdu5VJlxcsk+G6jQ=", body, key, ErrSignatureMalformed},
		{"no prefix", "jHdbRx5EZAsOfTwAPJOGkNUzQMVVdu5VJlxcsk+G6jQ=", body, key, ErrSignatureMalformed},
		{"upper case prefix", "SHA256=jHdbRx5EZAsOfTwAPJOGkNUzQMVVdu5VJlxcsk+G6jQ=", body, key, ErrSignatureMalformed},
		{"not base64", "sha256=not*base64", body, key, ErrSignatureMalformed},
		{"unpadded", "sha256=jHdbRx5EZAsOfTwAPJOGkNUzQMVVdu5VJlxcsk+G6jQ", body, key, ErrSignatureMalformed},
		{"url alphabet", "sha256=jHdbRx5EZAsOfTwAPJOGkNUzQMVVdu5VJlxcsk-G6jQ=", body, key, ErrSignatureMalformed},
		{"wrong length", "sha256=jHdbRx5EZAsOfTwAPJOGkNUzQMVVdu5V", body, key, ErrSignatureMalformed},
		{"body changed", vectorSig, []byte(vectorBody + "\n"), key, ErrSignatureMismatch},
		{"key changed", vectorSig, body, []byte("OtherKey"), ErrSignatureMismatch},
		{"signature changed", "sha256=kHdbRx5EZAsOfTwAPJOGkNUzQMVVdu5VJlxcsk+G6jQ=", body, key, ErrSignatureMismatch},
		{"no key", vectorSig, body, nil, ErrNoSignatureKey},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := ValidateSignature(tc.sig, tc.body, tc.key)
			if tc.want == nil {
				if err != nil {
					t.Errorf("ValidateSignature(%q) = %v, want nil", tc.sig, err)
				}
				return
			}
			if !errors.Is(err, tc.want) {
				t.Errorf("ValidateSignature(%q) = %v, want %v", tc.sig, err, tc.want)
			}
			if tc.want != ErrNoSignatureKey && !errors.Is(err, ErrSignatureInvalid) {
				t.Errorf("errors.Is(%v, ErrSignatureInvalid) = false", err)
			}
			if tc.want == ErrNoSignatureKey && errors.Is(err, ErrSignatureInvalid) {
				t.Errorf("ErrNoSignatureKey matches ErrSignatureInvalid; it is a configuration error")
			}
		})
	}
}

func TestSignValidateRoundTrip(t *testing.T) {
	body := []byte(`{"id":"42114492","status":"COMPLETED","recordsCount":41,"recordsFailedCount":0}`)
	key := []byte("callback-signing-key")
	if err := ValidateSignature(Sign(body, key), body, key); err != nil {
		t.Errorf("ValidateSignature(Sign(body)) = %v", err)
	}
	for _, sentinel := range []error{ErrSignatureMissing, ErrSignatureMalformed, ErrSignatureMismatch} {
		for _, other := range []error{ErrSignatureMissing, ErrSignatureMalformed, ErrSignatureMismatch} {
			if (sentinel == other) != errors.Is(sentinel, other) {
				t.Errorf("errors.Is(%v, %v) = %v", sentinel, other, errors.Is(sentinel, other))
			}
		}
	}
}
