package mpdirect

import (
	"context"
	"errors"
	"sync"

	"github.com/cebulk/cebulk/internal/secrets"
	"github.com/cebulk/cebulk/pkg/mixpanel"
)

// secretSource is where the credentials come from: *secrets.Loader.
type secretSource interface {
	Get(ctx context.Context) (secrets.Secret, error)
	Refresh(ctx context.Context) (secrets.Secret, error)
}

// Client is a *mixpanel.Client built on first use from the secret's service
// account, rebuilt when Mixpanel answers 401 and the secret has changed
// (rotated).
type Client struct {
	src  secretSource
	opts []mixpanel.Option

	mu sync.Mutex
	c  *mixpanel.Client
	s  mixpanel.Credentials
}

// NewClient returns a Client; opts are passed to mixpanel.NewClient
// (region, base URL, concurrency, logger).
func NewClient(src secretSource, opts ...mixpanel.Option) *Client {
	return &Client{src: src, opts: opts}
}

// Credentials are the Mixpanel credentials in s.
func Credentials(s secrets.Secret) mixpanel.Credentials {
	return mixpanel.Credentials{
		ServiceAccountUser:   s.ServiceAccountUser,
		ServiceAccountSecret: s.ServiceAccountSecret,
		ProjectID:            s.ProjectID,
		ProjectToken:         s.ProjectToken,
	}
}

func (c *Client) client(ctx context.Context) (*mixpanel.Client, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.c != nil {
		return c.c, nil
	}
	s, err := c.src.Get(ctx)
	if err != nil {
		return nil, err
	}
	return c.buildLocked(Credentials(s))
}

func (c *Client) buildLocked(creds mixpanel.Credentials) (*mixpanel.Client, error) {
	cl, err := mixpanel.NewClient(creds, c.opts...)
	if err != nil {
		return nil, err
	}
	c.c, c.s = cl, creds
	return cl, nil
}

// refresh re-reads the secret after a 401 and reports whether the
// credentials changed (only then is another try worth it).
func (c *Client) refresh(ctx context.Context) (bool, error) {
	s, err := c.src.Refresh(ctx)
	if err != nil {
		return false, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	creds := Credentials(s)
	changed := creds != c.s
	if _, err := c.buildLocked(creds); err != nil {
		return false, err
	}
	return changed, nil
}

// unauthorized refreshes the credentials after err when it is a 401, and
// reports whether a new try may succeed.
func (c *Client) unauthorized(ctx context.Context, err error) bool {
	if !errors.Is(err, mixpanel.ErrUnauthorized) {
		return false
	}
	changed, rerr := c.refresh(ctx)
	return rerr == nil && changed
}
