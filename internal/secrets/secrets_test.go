package secrets

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"
	"github.com/google/go-cmp/cmp"

	"github.com/cebulk/cebulk/internal/awsenv"
	"github.com/cebulk/cebulk/internal/awstest"
)

func TestParse(t *testing.T) {
	for _, tc := range []struct {
		name    string
		need    Need
		doc     string
		want    Secret
		wantErr string
	}{
		{"full", NeedCE, `{"userSecret":"u","organizationSecret":"o","elementToken":"e","signatureKey":"k"}`,
			Secret{UserSecret: "u", OrganizationSecret: "o", ElementToken: "e", SignatureKey: "k"}, ""},
		{"no signature key", NeedCE, `{"userSecret":"u","organizationSecret":"o","elementToken":"e"}`,
			Secret{UserSecret: "u", OrganizationSecret: "o", ElementToken: "e"}, ""},
		{"missing two", NeedCE, `{"userSecret":"u"}`, Secret{}, "missing organizationSecret, elementToken"},
		{"mixpanel fields only, CE needed", NeedCE, `{"serviceAccountUser":"sa","serviceAccountSecret":"SUPERSECRET","projectId":"1"}`,
			Secret{}, "missing userSecret, organizationSecret, elementToken"},
		{"mixpanel", NeedMixpanel, `{"serviceAccountUser":"sa","serviceAccountSecret":"s","projectId":"1","projectToken":"t"}`,
			Secret{ServiceAccountUser: "sa", ServiceAccountSecret: "s", ProjectID: "1", ProjectToken: "t"}, ""},
		{"both backends in one secret", NeedMixpanel, `{"userSecret":"u","organizationSecret":"o","elementToken":"e","serviceAccountUser":"sa","serviceAccountSecret":"s","projectId":"1"}`,
			Secret{UserSecret: "u", OrganizationSecret: "o", ElementToken: "e", ServiceAccountUser: "sa", ServiceAccountSecret: "s", ProjectID: "1"}, ""},
		{"mixpanel without project id", NeedMixpanel, `{"serviceAccountUser":"sa","serviceAccountSecret":"SUPERSECRET"}`, Secret{}, "missing projectId"},
		{"not json", NeedCE, `userSecret=SUPERSECRET`, Secret{}, "not a JSON object"},
		{"wrong type", NeedCE, `{"userSecret":"SUPERSECRET","organizationSecret":1}`, Secret{}, "not a JSON object"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseFor(tc.doc, tc.need)
			if tc.wantErr != "" {
				if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("Parse(%s) error = %v, want ErrInvalid mentioning %q", tc.name, err, tc.wantErr)
				}
				if strings.Contains(err.Error(), "SUPERSECRET") {
					t.Errorf("Parse error leaks the secret: %v", err)
				}
				return
			}
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("Parse mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

func TestSecretNeverPrints(t *testing.T) {
	s := Secret{"USERVAL", "ORGVAL", "ELEMVAL", "SIGVAL", "SAUSERVAL", "SASECRETVAL", "PROJECTVAL", "TOKENVAL"}
	for _, format := range []string{"%v", "%+v", "%#v", "%s"} {
		if out := fmt.Sprintf(format, s); strings.Contains(out, "VAL") {
			t.Errorf("Sprintf(%q, secret) = %s, leaks a value", format, out)
		}
	}
}

type fakeSM struct {
	calls int
	value string
}

func (f *fakeSM) GetSecretString(ctx context.Context, id string) (*string, error) {
	f.calls++
	v := f.value
	return &v, nil
}

func TestLoaderCachesAndRefreshes(t *testing.T) {
	f := &fakeSM{value: `{"userSecret":"u1","organizationSecret":"o","elementToken":"e"}`}
	now := time.Date(2026, 11, 26, 0, 0, 0, 0, time.UTC)
	l := NewLoader(f, "arn")
	l.now = func() time.Time { return now }
	for range 3 {
		if _, err := l.Get(t.Context()); err != nil {
			t.Fatal(err)
		}
	}
	if f.calls != 1 {
		t.Errorf("3 Gets made %d reads, want 1", f.calls)
	}
	f.value = `{"userSecret":"u2","organizationSecret":"o","elementToken":"e"}`
	if s, _ := l.Refresh(t.Context()); s.UserSecret != "u1" || f.calls != 1 {
		t.Errorf("Refresh right after load read again (calls=%d, user=%s)", f.calls, s.UserSecret)
	}
	now = now.Add(time.Minute)
	if s, _ := l.Refresh(t.Context()); s.UserSecret != "u2" || f.calls != 2 {
		t.Errorf("Refresh after a minute = %s (calls=%d), want u2 after 2 reads", s.UserSecret, f.calls)
	}
	if s, _ := l.Get(t.Context()); s.UserSecret != "u2" {
		t.Errorf("Get after Refresh = %s, want u2", s.UserSecret)
	}
}

// Against the local Secrets Manager (moto), through the functions' reader
// (awsenv.SecretReader): by ARN, by name, a missing secret and a binary one.
func TestLoaderOnLocalStack(t *testing.T) {
	arn := awstest.NewSecret(t, `{"userSecret":"u","organizationSecret":"o","elementToken":"e","signatureKey":"k"}`)
	sm := awsenv.NewSecretReader(awstest.Config(t))
	got, err := NewLoader(sm, arn).Get(t.Context())
	if err != nil {
		t.Fatalf("Get: %v", err)
	}
	if diff := cmp.Diff(Secret{UserSecret: "u", OrganizationSecret: "o", ElementToken: "e", SignatureKey: "k"}, got); diff != "" {
		t.Errorf("Get mismatch (-want +got):\n%s", diff)
	}
	name := arn[strings.LastIndex(arn, ":")+1 : len(arn)-7]
	if got, err := NewLoader(sm, name).Get(t.Context()); err != nil || got.UserSecret != "u" {
		t.Errorf("Get(by name %s) = %v, %v", name, got, err)
	}
	var apiErr *awsenv.APIError
	if _, err := NewLoader(sm, "cebulk-no-such-secret").Get(t.Context()); !errors.As(err, &apiErr) || apiErr.Code != "ResourceNotFoundException" {
		t.Errorf("Get(missing secret) = %v, want a ResourceNotFoundException", err)
	}
	bin, err := awstest.SecretsManager(t).CreateSecret(t.Context(), &secretsmanager.CreateSecretInput{
		Name: aws.String(awstest.UniqueName("cebulk-binary")), SecretBinary: []byte{0, 1, 2},
	})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := NewLoader(sm, *bin.ARN).Get(t.Context()); !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), "binary") {
		t.Errorf("Get(binary secret) = %v, want ErrInvalid naming binary secrets", err)
	}
}
