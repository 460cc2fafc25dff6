// Package ceclient gives the functions their CE client: a *ce.Client built
// from the Secrets Manager secret, rebuilt with freshly read credentials when
// CE answers 401 (the secret was rotated), and the call retried once.
//
// A streamed upload is never replayed: after a 401 on Upload the credentials
// are refreshed for the next call and the error is returned, so the pipeline
// retries the whole chunk.
package ceclient

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"iter"
	"sync"

	"github.com/cebulk/cebulk/internal/secrets"
	"github.com/cebulk/cebulk/pkg/ce"
)

// secretSource is the part of secrets.Loader the client uses.
type secretSource interface {
	Get(ctx context.Context) (secrets.Secret, error)
	Refresh(ctx context.Context) (secrets.Secret, error)
}

// Client implements the CE calls of the pipelines over a credential source.
type Client struct {
	src     secretSource
	baseURL string
	opts    []ce.Option

	mu sync.Mutex
	c  *ce.Client
	s  secrets.Secret
}

// New returns a Client for the CE API at baseURL; opts are passed to every
// ce.NewClient call.
func New(src secretSource, baseURL string, opts ...ce.Option) *Client {
	return &Client{src: src, baseURL: baseURL, opts: opts}
}

// Credentials converts a secret to CE credentials.
func Credentials(s secrets.Secret) ce.Credentials {
	return ce.Credentials{UserSecret: s.UserSecret, OrganizationSecret: s.OrganizationSecret, ElementToken: s.ElementToken}
}

// Secret returns the current secret (for the signature key).
func (c *Client) Secret(ctx context.Context) (secrets.Secret, error) {
	if _, err := c.client(ctx); err != nil {
		return secrets.Secret{}, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.s, nil
}

func (c *Client) client(ctx context.Context) (*ce.Client, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.c != nil {
		return c.c, nil
	}
	s, err := c.src.Get(ctx)
	if err != nil {
		return nil, err
	}
	return c.buildLocked(s)
}

func (c *Client) buildLocked(s secrets.Secret) (*ce.Client, error) {
	cl, err := ce.NewClient(c.baseURL, Credentials(s), c.opts...)
	if err != nil {
		return nil, err
	}
	c.c, c.s = cl, s
	return cl, nil
}

// refresh re-reads the secret after a 401 and reports whether the
// credentials changed (only then is a retry worth it).
func (c *Client) refresh(ctx context.Context) (bool, error) {
	s, err := c.src.Refresh(ctx)
	if err != nil {
		return false, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	changed := Credentials(s) != Credentials(c.s)
	if _, err := c.buildLocked(s); err != nil {
		return false, err
	}
	return changed, nil
}

// call runs fn with the client, and once more with refreshed credentials
// when CE answered 401 and the secret has changed.
func call[T any](ctx context.Context, c *Client, fn func(*ce.Client) (T, error)) (T, error) {
	cl, err := c.client(ctx)
	if err != nil {
		var zero T
		return zero, err
	}
	v, err := fn(cl)
	if !errors.Is(err, ce.ErrUnauthorized) {
		return v, err
	}
	changed, rerr := c.refresh(ctx)
	if rerr != nil || !changed {
		return v, err
	}
	cl, cerr := c.client(ctx)
	if cerr != nil {
		return v, err
	}
	return fn(cl)
}

// StartQuery starts a bulk download job (see ce.Client.StartQuery). A 401 is
// a refusal before any job exists, so the retry cannot create a second job.
func (c *Client) StartQuery(ctx context.Context, q ce.QueryRequest) (*ce.Job, error) {
	return call(ctx, c, func(cl *ce.Client) (*ce.Job, error) { return cl.StartQuery(ctx, q) })
}

// Status reads a job's status.
func (c *Client) Status(ctx context.Context, jobID string) (*ce.Job, error) {
	return call(ctx, c, func(cl *ce.Client) (*ce.Job, error) { return cl.Status(ctx, jobID) })
}

// Download opens a job's result file.
func (c *Client) Download(ctx context.Context, jobID, object string, opts ...ce.DownloadOption) (io.ReadCloser, error) {
	return call(ctx, c, func(cl *ce.Client) (io.ReadCloser, error) { return cl.Download(ctx, jobID, object, opts...) })
}

// Cancel cancels a job.
func (c *Client) Cancel(ctx context.Context, jobID string) error {
	_, err := call(ctx, c, func(cl *ce.Client) (struct{}, error) { return struct{}{}, cl.Cancel(ctx, jobID) })
	return err
}

// Upload streams r into a bulk upload job. It is never replayed; after a 401
// the credentials are refreshed for the next attempt.
func (c *Client) Upload(ctx context.Context, object string, r io.Reader, opts ce.UploadOptions) (*ce.Job, error) {
	cl, err := c.client(ctx)
	if err != nil {
		return nil, err
	}
	job, err := cl.Upload(ctx, object, r, opts)
	if errors.Is(err, ce.ErrUnauthorized) {
		_, _ = c.refresh(ctx)
	}
	return job, err
}

// Errors yields a job's per-record errors.
func (c *Client) Errors(ctx context.Context, jobID string, pageSize int) iter.Seq2[json.RawMessage, error] {
	return func(yield func(json.RawMessage, error) bool) {
		cl, err := c.client(ctx)
		if err != nil {
			yield(nil, err)
			return
		}
		for rec, err := range cl.Errors(ctx, jobID, pageSize) {
			if !yield(rec, err) {
				return
			}
		}
	}
}
