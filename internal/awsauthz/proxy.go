package awsauthz

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net/http"
	"net/http/httputil"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Options configure a Proxy.
type Options struct {
	// Upstream serves S3, Secrets Manager and SQS (moto, or the demo's
	// internal/localaws); Lambda serves the Lambda Invoke API (optional).
	Upstream, Lambda string
	Evaluator        *Evaluator
	// Roles are the policies enforced. Reference are the template's own
	// roles, used to name the statement a denied request needs (default
	// Roles).
	Roles, Reference *Roles
	// AdminKeys are access key ids that pass unchecked: the test harness's
	// and the demo's own setup calls.
	AdminKeys []string
	Usage     *Usage       // optional: records the statements that allowed requests
	Log       *slog.Logger // optional: every denial is logged at WARN
}

// Proxy authorises each request against the caller's role and forwards the
// allowed ones. Serve it over TLS (ServeTLS) so aws:SecureTransport is true.
type Proxy struct {
	o        Options
	upstream *url.URL
	lambda   *url.URL
	rp       *httputil.ReverseProxy
	hc       *http.Client

	mu         sync.Mutex
	principals map[string]principal // by access key id
	cache      map[string]Answer    // evaluations, by principal, role and request
	admin      map[string]bool
	denials    []Denial
}

type principal struct {
	fn        Function
	reference Function
	session   string // arn:aws:sts::<account>:assumed-role/<role>/<function>
}

// Denial is one request the proxy refused.
type Denial struct {
	Function  string // the function's logical id, or the access key id
	Role      string
	Operation string // the call, e.g. "GET /bucket/key"
	Action    string
	Resource  string
	// Reason: ImplicitlyDenied (no statement allows it), ExplicitlyDenied,
	// MissingKey (a 404 turned into 403: the caller may not s3:ListBucket),
	// Unmapped (no IAM action known for the request) or UnknownKey.
	Reason string
	// Statements: the deny statements (ExplicitlyDenied), or what allows it
	// in the template (a statement missing from the role under test), or a
	// hint what to add.
	Statements string
}

func (d Denial) String() string {
	s := fmt.Sprintf("%s (%s): %s -> %s %s on %s", d.Function, d.Role, d.Operation, d.Reason, d.Action, d.Resource)
	if d.Statements != "" {
		s += ": " + d.Statements
	}
	return s
}

type ctxKey struct{}

type reqState struct {
	target *url.URL
	p      *principal
	c      call
	tls    *tls.ConnectionState
}

// NewProxy returns a proxy with no principals besides the admin keys.
func NewProxy(o Options) (*Proxy, error) {
	if o.Evaluator == nil || o.Roles == nil {
		return nil, errors.New("awsauthz: NewProxy needs an Evaluator and Roles")
	}
	if o.Reference == nil {
		o.Reference = o.Roles
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	up, err := url.Parse(o.Upstream)
	if err != nil || up.Host == "" {
		return nil, fmt.Errorf("awsauthz: upstream %q: %v", o.Upstream, err)
	}
	p := &Proxy{o: o, upstream: up, principals: map[string]principal{}, admin: map[string]bool{}, cache: map[string]Answer{},
		hc: &http.Client{Timeout: 10 * time.Second}}
	if o.Lambda != "" {
		if p.lambda, err = url.Parse(o.Lambda); err != nil {
			return nil, fmt.Errorf("awsauthz: lambda upstream %q: %v", o.Lambda, err)
		}
	}
	for _, k := range o.AdminKeys {
		p.admin[k] = true
	}
	p.rp = &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			st := pr.In.Context().Value(ctxKey{}).(*reqState)
			pr.SetURL(st.target)
			pr.Out.Host = st.target.Host
		},
		ModifyResponse: p.modifyResponse,
		FlushInterval:  -1,
	}
	return p, nil
}

// AddPrincipal makes requests signed with accessKeyID run as the function
// logicalID's role.
func (p *Proxy) AddPrincipal(accessKeyID, logicalID string) error {
	fn, ok := p.o.Roles.Function(logicalID)
	if !ok {
		return fmt.Errorf("awsauthz: no function %s in the rendered template", logicalID)
	}
	ref, _ := p.o.Reference.Function(logicalID)
	p.mu.Lock()
	defer p.mu.Unlock()
	p.principals[accessKeyID] = principal{
		fn: fn, reference: ref,
		session: fmt.Sprintf("arn:aws:sts::%s:assumed-role/%s/%s", Account, fn.Role.Name, fn.Name),
	}
	return nil
}

// Denials returns the requests refused so far.
func (p *Proxy) Denials() []Denial {
	p.mu.Lock()
	defer p.mu.Unlock()
	return slices.Clone(p.denials)
}

func (p *Proxy) deny(d Denial) {
	p.o.Log.Warn("AWS request denied", "function", d.Function, "call", d.Operation, "reason", d.Reason,
		"action", d.Action, "resource", d.Resource, "statements", d.Statements)
	p.mu.Lock()
	p.denials = append(p.denials, d)
	p.mu.Unlock()
}

// credential returns the access key id and the service of the request's
// SigV4 credential scope (header or presigned query).
func credential(r *http.Request) (akid, service string) {
	cred := ""
	if auth := r.Header.Get("Authorization"); auth != "" {
		if i := strings.Index(auth, "Credential="); i >= 0 {
			cred, _, _ = strings.Cut(auth[i+len("Credential="):], ",")
		}
	} else {
		cred = r.URL.Query().Get("X-Amz-Credential")
	}
	parts := strings.Split(strings.TrimSpace(cred), "/")
	if len(parts) >= 4 {
		return parts[0], parts[3]
	}
	return parts[0], ""
}

func serviceOf(r *http.Request, scope string) string {
	if scope != "" {
		return scope
	}
	t := r.Header.Get("X-Amz-Target")
	switch {
	case strings.HasPrefix(t, "secretsmanager."):
		return "secretsmanager"
	case strings.HasPrefix(t, "AmazonSQS."):
		return "sqs"
	case strings.HasPrefix(r.URL.Path, "/2015-03-31/functions/"):
		return "lambda"
	}
	return "s3"
}

// ServeHTTP authorises and forwards one request.
func (p *Proxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	akid, scope := credential(r)
	service := serviceOf(r, scope)
	target := p.upstream
	if service == "lambda" {
		if p.lambda == nil {
			awsError(w, r, service, http.StatusNotFound, "ResourceNotFoundException", "no Lambda endpoint behind this proxy")
			return
		}
		target = p.lambda
	}
	st := &reqState{target: target, tls: r.TLS}
	if p.admin[akid] {
		p.rp.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), ctxKey{}, st)))
		return
	}
	p.mu.Lock()
	pr, known := p.principals[akid]
	p.mu.Unlock()
	if !known {
		d := Denial{Function: "access key " + akid, Operation: r.Method + " " + r.URL.Path, Reason: "UnknownKey"}
		p.deny(d)
		awsError(w, r, service, http.StatusForbidden, "InvalidAccessKeyId", "The AWS Access Key Id you provided does not exist in our records.")
		return
	}
	st.p = &pr

	var body []byte
	readBody := func() ([]byte, error) {
		if body == nil {
			b, err := io.ReadAll(io.LimitReader(r.Body, 8<<20))
			if err != nil {
				return nil, err
			}
			body = b
			r.Body = io.NopCloser(bytes.NewReader(b))
		}
		return body, nil
	}
	var c call
	var err error
	switch service {
	case "s3":
		c, err = s3Call(r, readBody)
	case "secretsmanager":
		if _, err = readBody(); err == nil {
			c, err = secretsCall(r, body, Region, Account, func(id string) string { return p.resolveSecret(r, id) })
		}
	case "sqs":
		if _, err = readBody(); err == nil {
			c, err = sqsCall(r, body, Region, Account)
		}
	case "lambda":
		c, err = lambdaCall(r, Region, Account)
	default:
		err = errUnmapped{"service " + service}
	}
	if err != nil {
		p.deny(Denial{Function: pr.fn.LogicalID, Role: pr.fn.Role.Name, Operation: c.Operation, Reason: "Unmapped", Statements: err.Error()})
		awsError(w, r, service, http.StatusForbidden, "AccessDenied", err.Error())
		return
	}
	st.c = c
	for _, ch := range c.Checks {
		a, err := p.evaluate(&pr, ch, r.TLS, false)
		if err != nil {
			awsError(w, r, service, http.StatusInternalServerError, "InternalError", err.Error())
			return
		}
		if a.Allowed() {
			p.o.Usage.record(pr.fn, ch.Action, a.Grants)
			continue
		}
		d := p.denial(&pr, c, ch, a, r.TLS)
		p.deny(d)
		awsError(w, r, service, http.StatusForbidden, "AccessDenied", accessDeniedMessage(pr.session, ch, a))
		return
	}
	p.rp.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), ctxKey{}, st)))
}

// evaluate asks the evaluator whether fn's role (plus the bucket policy)
// allows ch. Answers are cached: the evaluator needs milliseconds for a
// request (most of it matching the ARN to a resource type), and a function
// repeats the same requests (multipart parts, polling); the time keys are
// whole minutes so a cached answer is at most a minute old.
func (p *Proxy) evaluate(pr *principal, ch check, cs *tls.ConnectionState, reference bool) (Answer, error) {
	req := p.request(pr, ch, cs, reference)
	keys := slices.Sorted(maps.Keys(req.Context))
	var key strings.Builder
	key.WriteString(pr.session + "\x00" + strconv.FormatBool(reference) + "\x00" + ch.Action + "\x00" + ch.Resource)
	for _, k := range keys {
		key.WriteString("\x00" + k + "=" + req.Context[k])
	}
	p.mu.Lock()
	a, ok := p.cache[key.String()]
	p.mu.Unlock()
	if ok {
		return a, nil
	}
	a, err := p.o.Evaluator.Evaluate(req)
	if err != nil {
		return a, err
	}
	p.mu.Lock()
	if len(p.cache) > 50000 {
		clear(p.cache)
	}
	p.cache[key.String()] = a
	p.mu.Unlock()
	return a, nil
}

// request is the evaluation of ch for pr's enforced role (or the template's
// role when reference is set), with the request's condition keys.
func (p *Proxy) request(pr *principal, ch check, cs *tls.ConnectionState, reference bool) Request {
	fn := pr.fn
	if reference {
		fn = pr.reference
	}
	now := time.Now().UTC().Truncate(time.Minute)
	ctx := map[string]string{
		"aws:SecureTransport":  strconv.FormatBool(cs != nil),
		"aws:PrincipalArn":     fn.Role.ARN,
		"aws:PrincipalAccount": Account,
		"aws:PrincipalType":    "AssumedRole",
		"aws:RequestedRegion":  Region,
		"aws:CurrentTime":      now.Format(time.RFC3339),
		"aws:EpochTime":        strconv.FormatInt(now.Unix(), 10),
	}
	var resourcePolicy json.RawMessage
	if strings.HasPrefix(ch.Action, "s3:") {
		if cs != nil {
			ctx["s3:TlsVersion"] = tlsVersion(cs.Version)
		}
		ctx["s3:signatureversion"] = "AWS4-HMAC-SHA256"
		ctx["s3:authType"] = "REST-HEADER"
		bucket, _, _ := strings.Cut(strings.TrimPrefix(ch.Resource, "arn:aws:s3:::"), "/")
		for _, bp := range p.o.Roles.BucketPolicies {
			if bp.Bucket == bucket {
				resourcePolicy = bp.Document
			}
		}
	}
	for k, v := range ch.Context {
		ctx[k] = v
	}
	req := Request{
		Principal: pr.session, Action: ch.Action, Resource: ch.Resource, Account: Account,
		ResourcePolicy: resourcePolicy, Context: ctx,
	}
	for _, pol := range fn.Policies {
		req.IdentityPolicies = append(req.IdentityPolicies, NamedPolicy{Name: pol.Name, Policy: pol.Document})
	}
	return req
}

// denial describes a refused check, naming what would allow it.
func (p *Proxy) denial(pr *principal, c call, ch check, a Answer, cs *tls.ConnectionState) Denial {
	d := Denial{Function: pr.fn.LogicalID, Role: pr.fn.Role.Name, Operation: c.Operation, Action: ch.Action, Resource: ch.Resource, Reason: a.Result}
	var names []string
	if a.Result == "ExplicitlyDenied" {
		for _, s := range a.Denials {
			if s.DenialType == "Explicit" {
				names = append(names, s.Name())
			}
		}
		d.Statements = "denied by " + strings.Join(names, ", ")
		return d
	}
	if pr.reference.LogicalID != "" {
		if ra, err := p.evaluate(pr, ch, cs, true); err == nil && ra.Allowed() {
			for _, s := range ra.Grants {
				names = append(names, s.Name())
			}
			d.Statements = "the role lacks template.yaml's " + strings.Join(names, ", ")
			return d
		}
	}
	d.Statements = fmt.Sprintf("no statement of %s in template.yaml allows it: grant %s on %s", pr.fn.Role.LogicalID, ch.Action, ch.Resource)
	return d
}

func accessDeniedMessage(session string, ch check, a Answer) string {
	why := "because no identity-based policy allows the " + ch.Action + " action"
	if a.Result == "ExplicitlyDenied" {
		why = "with an explicit deny in a resource-based policy"
		for _, s := range a.Denials {
			if s.PolicyType == "identity" {
				why = "with an explicit deny in an identity-based policy"
			}
		}
	}
	return fmt.Sprintf("User: %s is not authorized to perform: %s on resource: %q %s", session, ch.Action, ch.Resource, why)
}

// modifyResponse enforces S3's missing-key rule: a 404 for a GET or HEAD of
// an object stays a 404 only when the caller may s3:ListBucket the bucket,
// evaluated without s3:prefix (the strict reading: a grant conditioned on a
// prefix does not count).
func (p *Proxy) modifyResponse(resp *http.Response) error {
	st, _ := resp.Request.Context().Value(ctxKey{}).(*reqState)
	if st == nil || st.p == nil || !st.c.ObjectRead || resp.StatusCode != http.StatusNotFound {
		return nil
	}
	ch := check{Action: "s3:ListBucket", Resource: "arn:aws:s3:::" + st.c.Bucket}
	a, err := p.evaluate(st.p, ch, st.tls, false)
	if err != nil {
		return err
	}
	if a.Allowed() {
		p.o.Usage.record(st.p.fn, ch.Action, a.Grants)
		return nil
	}
	d := p.denial(st.p, st.c, ch, a, st.tls)
	d.Reason = "MissingKey"
	d.Statements = "the key does not exist and the role may not s3:ListBucket the bucket without an s3:prefix condition, so S3 answers 403, not 404; " + d.Statements
	p.deny(d)
	_ = resp.Body.Close()
	msg := accessDeniedMessage(st.p.session, ch, a)
	var b []byte
	if resp.Request.Method != http.MethodHead {
		b = s3ErrorBody("AccessDenied", msg)
	}
	resp.StatusCode = http.StatusForbidden
	resp.Status = "403 Forbidden"
	resp.Header = http.Header{"Content-Type": {"application/xml"}, "X-Amz-Request-Id": {requestID()}}
	resp.Header.Set("Content-Length", strconv.Itoa(len(b)))
	resp.ContentLength = int64(len(b))
	resp.Body = io.NopCloser(bytes.NewReader(b))
	return nil
}

// resolveSecret returns the full ARN of the secret id (a name or partial
// ARN) by asking the upstream Secrets Manager; AWS evaluates policies
// against the full ARN.
func (p *Proxy) resolveSecret(r *http.Request, id string) string {
	fallback := id
	if !strings.HasPrefix(id, "arn:") {
		fallback = fmt.Sprintf("arn:aws:secretsmanager:%s:%s:secret:%s", Region, Account, id)
	}
	body, _ := json.Marshal(map[string]string{"SecretId": id})
	req, err := http.NewRequestWithContext(r.Context(), http.MethodPost, p.upstream.String()+"/", bytes.NewReader(body))
	if err != nil {
		return fallback
	}
	req.Header.Set("Content-Type", "application/x-amz-json-1.1")
	req.Header.Set("X-Amz-Target", "secretsmanager.DescribeSecret")
	req.Header.Set("Authorization", r.Header.Get("Authorization"))
	resp, err := p.hc.Do(req)
	if err != nil {
		return fallback
	}
	defer resp.Body.Close()
	var out struct {
		ARN string `json:"ARN"`
	}
	if resp.StatusCode != http.StatusOK || json.NewDecoder(resp.Body).Decode(&out) != nil || out.ARN == "" {
		return fallback
	}
	return out.ARN
}

func tlsVersion(v uint16) string {
	switch v {
	case tls.VersionTLS10:
		return "1.0"
	case tls.VersionTLS11:
		return "1.1"
	case tls.VersionTLS12:
		return "1.2"
	default:
		return "1.3"
	}
}

func requestID() string { return strconv.FormatInt(time.Now().UnixNano(), 36) }

func s3ErrorBody(code, msg string) []byte {
	var b bytes.Buffer
	b.WriteString(xml.Header)
	_ = xml.NewEncoder(&b).Encode(struct {
		XMLName   xml.Name `xml:"Error"`
		Code      string
		Message   string
		RequestID string `xml:"RequestId"`
	}{Code: code, Message: msg, RequestID: requestID()})
	return b.Bytes()
}

// awsError answers in the service's own error shape.
func awsError(w http.ResponseWriter, r *http.Request, service string, status int, code, msg string) {
	h := w.Header()
	h.Set("X-Amzn-RequestId", requestID())
	switch service {
	case "s3":
		h.Set("Content-Type", "application/xml")
		w.WriteHeader(status)
		if r.Method != http.MethodHead {
			_, _ = w.Write(s3ErrorBody(code, msg))
		}
	case "lambda":
		if code == "AccessDenied" {
			code = "AccessDeniedException"
		}
		h.Set("Content-Type", "application/json")
		h.Set("X-Amzn-ErrorType", code)
		w.WriteHeader(status)
		_ = json.NewEncoder(w).Encode(map[string]string{"Type": "User", "message": msg})
	case "sqs":
		if strings.HasPrefix(r.Header.Get("X-Amz-Target"), "AmazonSQS.") {
			h.Set("Content-Type", "application/x-amz-json-1.0")
			h.Set("X-Amzn-Query-Error", code+";Sender")
			w.WriteHeader(status)
			_ = json.NewEncoder(w).Encode(map[string]string{"__type": "com.amazon.coral.service#" + code + "Exception", "message": msg})
			return
		}
		h.Set("Content-Type", "text/xml")
		w.WriteHeader(status)
		fmt.Fprintf(w, `<?xml version="1.0"?><ErrorResponse><Error><Type>Sender</Type><Code>%s</Code><Message>%s</Message></Error><RequestId>%s</RequestId></ErrorResponse>`, code, xmlEscape(msg), requestID())
	default: // JSON 1.1 services (Secrets Manager): HTTP 400 with __type
		if code == "AccessDenied" {
			code = "AccessDeniedException"
		}
		if code == "InvalidAccessKeyId" {
			code = "UnrecognizedClientException"
		}
		h.Set("Content-Type", "application/x-amz-json-1.1")
		w.WriteHeader(http.StatusBadRequest)
		_ = json.NewEncoder(w).Encode(map[string]string{"__type": code, "Message": msg})
	}
}

func xmlEscape(s string) string {
	var b bytes.Buffer
	_ = xml.EscapeText(&b, []byte(s))
	return b.String()
}
