// Package secrets loads cebulk's one Secrets Manager secret: the CE
// credentials and the optional callback signature key, or, for the Mixpanel
// backend, the service account, project id and project token.
//
// The secret is read once per cold start and cached; Refresh re-reads it once
// when CE answers 401 (the secret was rotated). Values never appear in errors
// or logs: errors name the secret and the field, never the content.
package secrets

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"
)

// Secret is the JSON document stored in Secrets Manager:
//
//	{"userSecret": "...", "organizationSecret": "...", "elementToken": "...", "signatureKey": "optional",
//	 "serviceAccountUser": "...", "serviceAccountSecret": "...", "projectId": "...", "projectToken": "..."}
//
// The CE fields are required with the CE backend, the service account and
// project id with the Mixpanel backend (see Need); one secret may hold both,
// which is how a stack switches backends without a new secret.
type Secret struct {
	UserSecret         string `json:"userSecret,omitempty"`
	OrganizationSecret string `json:"organizationSecret,omitempty"`
	ElementToken       string `json:"elementToken,omitempty"`
	SignatureKey       string `json:"signatureKey,omitempty"`

	ServiceAccountUser   string `json:"serviceAccountUser,omitempty"`
	ServiceAccountSecret string `json:"serviceAccountSecret,omitempty"`
	ProjectID            string `json:"projectId,omitempty"`
	// ProjectToken is written into profile updates ($token); only a users
	// import through the Mixpanel backend needs it.
	ProjectToken string `json:"projectToken,omitempty"`
}

// Need names the credentials a process requires from the secret.
type Need int

const (
	// NeedCE requires userSecret, organizationSecret and elementToken.
	NeedCE Need = iota
	// NeedMixpanel requires serviceAccountUser, serviceAccountSecret and
	// projectId.
	NeedMixpanel
)

// String hides every value, so a Secret printed by mistake leaks nothing.
func (s Secret) String() string { return "secrets.Secret{redacted}" }

// GoString hides every value from %#v too.
func (s Secret) GoString() string { return s.String() }

// ErrInvalid is wrapped by errors about the secret's content.
var ErrInvalid = errors.New("invalid secret")

// Parse decodes and checks a secret document for the CE backend.
func Parse(doc string) (Secret, error) { return ParseFor(doc, NeedCE) }

// ParseFor decodes a secret document and checks the fields need requires.
func ParseFor(doc string, need Need) (Secret, error) {
	var s Secret
	dec := json.NewDecoder(strings.NewReader(doc))
	if err := dec.Decode(&s); err != nil {
		// json's messages can quote the input: say only what is wrong.
		return Secret{}, fmt.Errorf("%w: not a JSON object with string fields", ErrInvalid)
	}
	var missing []string
	check := func(v, name string) {
		if v == "" {
			missing = append(missing, name)
		}
	}
	switch need {
	case NeedMixpanel:
		check(s.ServiceAccountUser, "serviceAccountUser")
		check(s.ServiceAccountSecret, "serviceAccountSecret")
		check(s.ProjectID, "projectId")
	default:
		check(s.UserSecret, "userSecret")
		check(s.OrganizationSecret, "organizationSecret")
		check(s.ElementToken, "elementToken")
	}
	if len(missing) > 0 {
		return Secret{}, fmt.Errorf("%w: missing %s", ErrInvalid, strings.Join(missing, ", "))
	}
	return s, nil
}

// secretStringAPI reads a secret's string value, nil when it has a binary
// one (awsenv.SecretReader).
type secretStringAPI interface {
	GetSecretString(ctx context.Context, id string) (*string, error)
}

// Loader fetches and caches one secret.
type Loader struct {
	api      secretStringAPI
	id       string
	need     Need
	minAge   time.Duration
	now      func() time.Time
	mu       sync.Mutex
	cached   *Secret
	loadedAt time.Time
}

// NewLoader returns a Loader for the secret id (a name or an ARN), checked
// for the CE backend's fields.
func NewLoader(api secretStringAPI, id string) *Loader { return NewLoaderFor(api, id, NeedCE) }

// NewLoaderFor returns a Loader for the secret id, checked for the fields
// need requires.
func NewLoaderFor(api secretStringAPI, id string, need Need) *Loader {
	return &Loader{api: api, id: id, need: need, minAge: 30 * time.Second, now: time.Now}
}

// Get returns the cached secret, loading it on first use.
func (l *Loader) Get(ctx context.Context) (Secret, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.cached != nil {
		return *l.cached, nil
	}
	return l.loadLocked(ctx)
}

// Refresh re-reads the secret after CE refused the cached credentials. Calls
// within 30 seconds of the last load return the cached value, so a burst of
// 401s costs one read.
func (l *Loader) Refresh(ctx context.Context) (Secret, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.cached != nil && l.now().Sub(l.loadedAt) < l.minAge {
		return *l.cached, nil
	}
	return l.loadLocked(ctx)
}

func (l *Loader) loadLocked(ctx context.Context) (Secret, error) {
	value, err := l.api.GetSecretString(ctx, l.id)
	if err != nil {
		return Secret{}, fmt.Errorf("read secret %s: %w", l.id, err)
	}
	if value == nil {
		return Secret{}, fmt.Errorf("read secret %s: %w: no string value (binary secrets are not supported)", l.id, ErrInvalid)
	}
	s, err := ParseFor(*value, l.need)
	if err != nil {
		return Secret{}, fmt.Errorf("read secret %s: %w", l.id, err)
	}
	l.cached, l.loadedAt = &s, l.now()
	return s, nil
}
