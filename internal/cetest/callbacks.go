package cetest

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"io"
	"net/http"
	"slices"
	"time"
)

// SignatureHeader is the header that carries a callback's signature.
const SignatureHeader = "Elements-Webhook-Signature"

// Delivery records one attempt to deliver a job's completion callback.
type Delivery struct {
	JobID      string
	URL        string
	Body       []byte // the exact bytes sent (and signed)
	Signature  string // the SignatureHeader value; "" without a SignatureKey
	Attempt    int    // 1 for the first attempt
	StatusCode int    // the answer's status; 0 when the request failed
	Err        string // the transport error, if any
	At         time.Time
}

// OK reports whether the receiver answered 2xx.
func (d Delivery) OK() bool { return d.StatusCode >= 200 && d.StatusCode < 300 }

type callback struct {
	jobID, url string
	body       []byte
	attempts   int
}

// Sign returns the Elements-Webhook-Signature value of body under key:
// "sha256=" + base64(HMAC-SHA256(key, body)).
func Sign(body []byte, key string) string {
	mac := hmac.New(sha256.New, []byte(key))
	mac.Write(body)
	return "sha256=" + base64.StdEncoding.EncodeToString(mac.Sum(nil))
}

// DeliverCallbacks makes every job whose time has come terminal, then sends
// each due callback once, synchronously, and returns what happened. A
// callback whose attempt failed (transport error or non-2xx) is sent again by
// a later call, until Options.CallbackAttempts attempts have been made.
//
// A callback is a POST of the job's status body (the same JSON as GET
// bulk/{id}/status, plus "callback-payload" when the job was given one) with
// Content-Type application/json, and SignatureHeader when
// Options.SignatureKey is set.
func (f *Fake) DeliverCallbacks(ctx context.Context) []Delivery {
	f.mu.Lock()
	f.advanceLocked()
	due := f.pending
	f.pending = nil
	f.mu.Unlock()

	var out []Delivery
	var retry []*callback
	for i, cb := range due {
		if ctx.Err() != nil {
			retry = append(retry, due[i:]...)
			break
		}
		cb.attempts++
		d := f.send(ctx, cb.jobID, cb.url, cb.body, cb.attempts)
		out = append(out, d)
		if !d.OK() && cb.attempts < f.opts.CallbackAttempts {
			retry = append(retry, cb)
		}
	}
	f.mu.Lock()
	f.deliveries = append(f.deliveries, out...)
	f.pending = append(retry, f.pending...)
	f.mu.Unlock()
	return out
}

// ResendCallback sends the callback of a terminal job once more, with the
// same body, whatever happened before: tests use it to check that the
// receiver is idempotent. It fails when the job is unknown, not terminal or
// has no callback URL.
func (f *Fake) ResendCallback(ctx context.Context, jobID string) (Delivery, error) {
	f.mu.Lock()
	f.advanceLocked()
	j := f.jobs[jobID]
	var url string
	var body []byte
	attempt := 1
	if j != nil {
		url, body = j.callback, j.callbackBody
		for _, d := range f.deliveries {
			if d.JobID == jobID {
				attempt = max(attempt, d.Attempt+1)
			}
		}
	}
	f.mu.Unlock()
	if j == nil {
		return Delivery{}, fmt.Errorf("cetest: no job %s", jobID)
	}
	if body == nil {
		return Delivery{}, fmt.Errorf("cetest: job %s has no callback to resend", jobID)
	}
	d := f.send(ctx, jobID, url, body, attempt)
	f.mu.Lock()
	f.deliveries = append(f.deliveries, d)
	f.mu.Unlock()
	return d, nil
}

// Deliveries returns every callback attempt so far, in order.
func (f *Fake) Deliveries() []Delivery {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.deliveries)
}

func (f *Fake) send(ctx context.Context, jobID, url string, body []byte, attempt int) Delivery {
	d := Delivery{JobID: jobID, URL: url, Body: body, Attempt: attempt, At: f.now()}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		d.Err = err.Error()
		return d
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "cetest-callbacks")
	if f.opts.SignatureKey != "" {
		d.Signature = Sign(body, f.opts.SignatureKey)
		req.Header.Set(SignatureHeader, d.Signature)
	}
	resp, err := f.opts.CallbackClient.Do(req)
	if err != nil {
		d.Err = err.Error()
		return d
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<20))
	resp.Body.Close()
	d.StatusCode = resp.StatusCode
	return d
}
