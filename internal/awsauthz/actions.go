package awsauthz

import (
	"encoding/json"
	"encoding/xml"
	"fmt"
	"net/http"
	"net/url"
	"regexp"
	"strings"
)

// call is one request as IAM sees it: the service it is for and the
// authorisation checks AWS makes for it (most calls make one; CopyObject
// makes two, DeleteObjects one per key).
type call struct {
	Service   string // s3, secretsmanager, sqs, lambda
	Operation string // for messages, e.g. "GET /bucket/key" or "secretsmanager.GetSecretValue"
	Checks    []check
	// For S3's missing-key rule: set on GET and HEAD of an object.
	ObjectRead bool
	Bucket     string
}

// check is one authorisation: action on resource with request-specific
// condition keys (on top of the global ones the proxy adds).
type check struct {
	Action   string
	Resource string
	Context  map[string]string
}

func (c check) String() string { return c.Action + " on " + c.Resource }

// errUnmapped is returned for a request whose IAM action this package does
// not know: the proxy denies it rather than guess.
type errUnmapped struct{ what string }

func (e errUnmapped) Error() string {
	return "awsauthz: no IAM action known for " + e.what + " (add it to internal/awsauthz/actions.go)"
}

// s3Call maps an S3 REST request (path-style) to its IAM checks, following
// the "Actions, resources, and condition keys for Amazon S3" table.
func s3Call(r *http.Request, body func() ([]byte, error)) (call, error) {
	path := strings.TrimPrefix(r.URL.Path, "/")
	bucket, key, hasKey := strings.Cut(path, "/")
	q := r.URL.Query()
	has := func(k string) bool { _, ok := q[k]; return ok }
	c := call{Service: "s3", Operation: r.Method + " /" + path, Bucket: bucket}
	if q.Encode() != "" {
		c.Operation += "?" + q.Encode()
	}
	bucketARN := "arn:aws:s3:::" + bucket
	objectARN := bucketARN + "/" + key
	one := func(action, resource string, ctx map[string]string) (call, error) {
		c.Checks = []check{{Action: action, Resource: resource, Context: ctx}}
		return c, nil
	}
	if bucket == "" {
		if r.Method == http.MethodGet {
			return one("s3:ListAllMyBuckets", "*", nil)
		}
		return c, errUnmapped{c.Operation}
	}
	if hasKey && key != "" {
		versioned := func(plain, version string) string {
			if has("versionId") {
				return version
			}
			return plain
		}
		switch r.Method {
		case http.MethodGet, http.MethodHead:
			switch {
			case has("uploadId"):
				return one("s3:ListMultipartUploadParts", objectARN, nil)
			case has("tagging"):
				return one(versioned("s3:GetObjectTagging", "s3:GetObjectVersionTagging"), objectARN, nil)
			case has("acl"):
				return one(versioned("s3:GetObjectAcl", "s3:GetObjectVersionAcl"), objectARN, nil)
			case has("attributes"):
				return one(versioned("s3:GetObjectAttributes", "s3:GetObjectVersionAttributes"), objectARN, nil)
			case has("retention"), has("legal-hold"), has("torrent"):
				return c, errUnmapped{c.Operation}
			}
			c.ObjectRead = true
			return one(versioned("s3:GetObject", "s3:GetObjectVersion"), objectARN, nil)
		case http.MethodPut:
			switch {
			case has("tagging"):
				return one(versioned("s3:PutObjectTagging", "s3:PutObjectVersionTagging"), objectARN, nil)
			case has("acl"):
				return one(versioned("s3:PutObjectAcl", "s3:PutObjectVersionAcl"), objectARN, nil)
			case has("retention"), has("legal-hold"):
				return c, errUnmapped{c.Operation}
			}
			c.Checks = []check{{Action: "s3:PutObject", Resource: objectARN}}
			if src := r.Header.Get("X-Amz-Copy-Source"); src != "" {
				// CopyObject and UploadPartCopy also read the source.
				src, _ = url.PathUnescape(src)
				src = strings.TrimPrefix(src, "/")
				action := "s3:GetObject"
				if p, v, ok := strings.Cut(src, "?versionId="); ok && v != "" {
					src, action = p, "s3:GetObjectVersion"
				}
				c.Checks = append(c.Checks, check{Action: action, Resource: "arn:aws:s3:::" + src})
			}
			return c, nil
		case http.MethodPost:
			switch {
			case has("uploads"), has("uploadId"): // CreateMultipartUpload, CompleteMultipartUpload
				return one("s3:PutObject", objectARN, nil)
			case has("restore"):
				return one("s3:RestoreObject", objectARN, nil)
			case has("select"):
				return one("s3:GetObject", objectARN, nil)
			}
		case http.MethodDelete:
			switch {
			case has("uploadId"):
				return one("s3:AbortMultipartUpload", objectARN, nil)
			case has("tagging"):
				return one(versioned("s3:DeleteObjectTagging", "s3:DeleteObjectVersionTagging"), objectARN, nil)
			}
			return one(versioned("s3:DeleteObject", "s3:DeleteObjectVersion"), objectARN, nil)
		}
		return c, errUnmapped{c.Operation}
	}

	// Bucket-level requests.
	listContext := func() map[string]string {
		ctx := map[string]string{}
		for _, k := range []string{"prefix", "delimiter", "max-keys"} {
			if has(k) {
				ctx["s3:"+k] = q.Get(k)
			}
		}
		return ctx
	}
	switch r.Method {
	case http.MethodGet:
		sub := map[string]string{
			"uploads": "s3:ListBucketMultipartUploads", "versions": "s3:ListBucketVersions",
			"location": "s3:GetBucketLocation", "versioning": "s3:GetBucketVersioning",
			"policy": "s3:GetBucketPolicy", "notification": "s3:GetBucketNotification",
			"lifecycle": "s3:GetLifecycleConfiguration", "encryption": "s3:GetEncryptionConfiguration",
			"tagging": "s3:GetBucketTagging", "acl": "s3:GetBucketAcl", "cors": "s3:GetBucketCORS",
			"publicAccessBlock": "s3:GetBucketPublicAccessBlock", "ownershipControls": "s3:GetBucketOwnershipControls",
		}
		for k, action := range sub {
			if has(k) {
				if k == "uploads" || k == "versions" {
					return one(action, bucketARN, listContext())
				}
				return one(action, bucketARN, nil)
			}
		}
		for k := range q {
			if k != "list-type" && k != "prefix" && k != "delimiter" && k != "max-keys" && k != "continuation-token" &&
				k != "start-after" && k != "fetch-owner" && k != "encoding-type" && k != "marker" {
				return c, errUnmapped{c.Operation}
			}
		}
		return one("s3:ListBucket", bucketARN, listContext()) // ListObjects(V2)
	case http.MethodHead:
		return one("s3:ListBucket", bucketARN, nil) // HeadBucket
	case http.MethodPut:
		if len(q) == 0 {
			return one("s3:CreateBucket", bucketARN, nil)
		}
		sub := map[string]string{
			"versioning": "s3:PutBucketVersioning", "policy": "s3:PutBucketPolicy",
			"notification": "s3:PutBucketNotification", "lifecycle": "s3:PutLifecycleConfiguration",
			"tagging": "s3:PutBucketTagging", "encryption": "s3:PutEncryptionConfiguration",
		}
		for k, action := range sub {
			if has(k) {
				return one(action, bucketARN, nil)
			}
		}
	case http.MethodDelete:
		if len(q) == 0 {
			return one("s3:DeleteBucket", bucketARN, nil)
		}
	case http.MethodPost:
		if has("delete") { // DeleteObjects: s3:DeleteObject on each key
			b, err := body()
			if err != nil {
				return c, err
			}
			var d struct {
				Objects []struct {
					Key       string `xml:"Key"`
					VersionID string `xml:"VersionId"`
				} `xml:"Object"`
			}
			if err := xml.Unmarshal(b, &d); err != nil {
				return c, fmt.Errorf("DeleteObjects body: %v", err)
			}
			for _, o := range d.Objects {
				action := "s3:DeleteObject"
				if o.VersionID != "" {
					action = "s3:DeleteObjectVersion"
				}
				c.Checks = append(c.Checks, check{Action: action, Resource: bucketARN + "/" + o.Key})
			}
			return c, nil
		}
	}
	return c, errUnmapped{c.Operation}
}

var fullSecretARN = regexp.MustCompile(`^arn:aws[a-z-]*:secretsmanager:[a-z0-9-]+:[0-9]{12}:secret:.+-[A-Za-z0-9]{6}$`)

// secretsCall maps a Secrets Manager request (JSON 1.1, X-Amz-Target
// secretsmanager.<Op>) to its check. resolve turns a name or partial ARN into
// the secret's full ARN (AWS evaluates policies against the full ARN).
func secretsCall(r *http.Request, body []byte, region, account string, resolve func(id string) string) (call, error) {
	op := strings.TrimPrefix(r.Header.Get("X-Amz-Target"), "secretsmanager.")
	c := call{Service: "secretsmanager", Operation: "secretsmanager." + op}
	var in struct {
		SecretID string `json:"SecretId"`
		Name     string `json:"Name"`
	}
	_ = json.Unmarshal(body, &in)
	resource := "*"
	switch {
	case in.SecretID != "":
		resource = in.SecretID
		if !fullSecretARN.MatchString(resource) {
			resource = resolve(in.SecretID)
		}
	case op == "CreateSecret" && in.Name != "":
		resource = fmt.Sprintf("arn:aws:secretsmanager:%s:%s:secret:%s-000000", region, account, in.Name)
	case op == "ListSecrets" || op == "GetRandomPassword" || op == "BatchGetSecretValue":
	default:
		return c, errUnmapped{c.Operation}
	}
	c.Checks = []check{{Action: "secretsmanager:" + op, Resource: resource}}
	c.Operation += " " + resource
	return c, nil
}

// sqsCall maps an SQS request (JSON protocol with X-Amz-Target
// AmazonSQS.<Op>, or the query protocol with Action=) to its check.
func sqsCall(r *http.Request, body []byte, region, account string) (call, error) {
	var op, queueURL, queueName string
	if t := r.Header.Get("X-Amz-Target"); strings.HasPrefix(t, "AmazonSQS.") {
		op = strings.TrimPrefix(t, "AmazonSQS.")
		var in struct {
			QueueURL  string `json:"QueueUrl"`
			QueueName string `json:"QueueName"`
		}
		_ = json.Unmarshal(body, &in)
		queueURL, queueName = in.QueueURL, in.QueueName
	} else {
		form, _ := url.ParseQuery(string(body))
		for k, v := range r.URL.Query() {
			form[k] = v
		}
		op, queueURL, queueName = form.Get("Action"), form.Get("QueueUrl"), form.Get("QueueName")
	}
	c := call{Service: "sqs", Operation: "sqs." + op}
	if op == "" {
		return c, errUnmapped{"an SQS request without an action"}
	}
	action := "sqs:" + strings.TrimSuffix(op, "Batch")
	resource := "*"
	switch {
	case queueURL != "":
		u, err := url.Parse(queueURL)
		if err != nil {
			return c, fmt.Errorf("QueueUrl %q: %v", queueURL, err)
		}
		parts := strings.Split(strings.Trim(u.Path, "/"), "/")
		if len(parts) < 2 {
			return c, fmt.Errorf("QueueUrl %q has no account and name", queueURL)
		}
		resource = fmt.Sprintf("arn:aws:sqs:%s:%s:%s", region, parts[len(parts)-2], parts[len(parts)-1])
	case queueName != "":
		resource = fmt.Sprintf("arn:aws:sqs:%s:%s:%s", region, account, queueName)
	case op == "ListQueues":
	default:
		return c, errUnmapped{c.Operation}
	}
	c.Checks = []check{{Action: action, Resource: resource}}
	c.Operation += " " + resource
	return c, nil
}

// lambdaCall maps a Lambda Invoke request to lambda:InvokeFunction on the
// function's ARN (with its qualifier, as AWS evaluates it).
func lambdaCall(r *http.Request, region, account string) (call, error) {
	c := call{Service: "lambda", Operation: r.Method + " " + r.URL.Path}
	rest, ok := strings.CutPrefix(r.URL.Path, "/2015-03-31/functions/")
	name, ok2 := strings.CutSuffix(rest, "/invocations")
	if r.Method != http.MethodPost || !ok || !ok2 || name == "" {
		return c, errUnmapped{c.Operation}
	}
	name, _ = url.PathUnescape(name)
	arn := name
	if !strings.HasPrefix(name, "arn:") {
		fn, qual, hasQual := strings.Cut(name, ":")
		arn = fmt.Sprintf("arn:aws:lambda:%s:%s:function:%s", region, account, fn)
		if hasQual {
			arn += ":" + qual
		}
	}
	if q := r.URL.Query().Get("Qualifier"); q != "" {
		arn += ":" + q
	}
	c.Checks = []check{{Action: "lambda:InvokeFunction", Resource: arn}}
	c.Operation = "lambda.Invoke " + arn
	if t := r.Header.Get("X-Amz-Invocation-Type"); t != "" {
		c.Operation += " (" + t + ")"
	}
	return c, nil
}
