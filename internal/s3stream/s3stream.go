// Package s3stream is the one place that talks to S3: streaming multipart
// uploads from an io.Reader, streaming reads (whole, or from an offset to
// resume one), and small JSON-sized objects written with conditions
// (If-None-Match: *, If-Match: etag) for the job ledger and watermarks.
//
// Uploads go through the SDK's feature/s3/transfermanager (v0.x, pinned in
// go.mod; the older feature/s3/manager is deprecated in its favour): memory is
// bounded by part size × concurrency whatever the stream's length, and nothing
// is staged on disk. Reads use plain GetObject: transfermanager's GetObject
// misbehaves on moto (local-aws-stack notes). Only this file knows the
// library.
package s3stream

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"iter"
	"log/slog"
	mrand "math/rand/v2"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/feature/s3/transfermanager"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/aws/smithy-go"
)

// ErrNotFound is returned (wrapped) when an object does not exist.
var ErrNotFound = errors.New("s3stream: object not found")

// ErrPrecondition is returned (wrapped) when a conditional write lost: the
// object already exists (If-None-Match: *) or changed (If-Match).
var ErrPrecondition = errors.New("s3stream: precondition failed")

// API is the part of the S3 client this package uses.
type API interface {
	transfermanager.S3APIClient
	GetObject(ctx context.Context, in *s3.GetObjectInput, opts ...func(*s3.Options)) (*s3.GetObjectOutput, error)
	HeadObject(ctx context.Context, in *s3.HeadObjectInput, opts ...func(*s3.Options)) (*s3.HeadObjectOutput, error)
	DeleteObject(ctx context.Context, in *s3.DeleteObjectInput, opts ...func(*s3.Options)) (*s3.DeleteObjectOutput, error)
	ListObjectsV2(ctx context.Context, in *s3.ListObjectsV2Input, opts ...func(*s3.Options)) (*s3.ListObjectsV2Output, error)
}

// Store reads and writes objects.
type Store struct {
	api      API
	uploader *transfermanager.Client
	partSize int64
	parts    int
	log      *slog.Logger
}

// Option configures a Store.
type Option func(*Store)

// WithPartSize sets the multipart part size (minimum 5 MiB) and the number of
// parts uploaded at once. Peak memory of one Put is about size × concurrency.
func WithPartSize(size int64, concurrency int) Option {
	return func(s *Store) {
		s.partSize = size
		s.parts = concurrency
	}
}

// WithLogger sets the logger for upload failures.
func WithLogger(l *slog.Logger) Option { return func(s *Store) { s.log = l } }

// New returns a Store over api (an *s3.Client in production).
func New(api API, opts ...Option) *Store {
	s := &Store{
		api:      api,
		partSize: minPartSize,
		parts:    2,
		log:      slog.New(slog.DiscardHandler),
	}
	for _, o := range opts {
		o(s)
	}
	s.uploader = transfermanager.New(api, func(o *transfermanager.Options) {
		o.PartSizeBytes = s.partSize
		o.MultipartUploadThreshold = s.partSize
		o.Concurrency = s.parts
		// Abort a failed multipart upload with a fresh context, so a
		// cancelled or expired caller context still leaves no parts behind.
		o.FailTimeout = 30 * time.Second
		// Checksums only where required: the transfer manager overrides
		// the client's setting otherwise (local-aws-stack G3).
		o.RequestChecksumCalculation = aws.RequestChecksumCalculationWhenRequired
	})
	return s
}

// minPartSize is S3's smallest multipart part (5 MiB).
const minPartSize = 5 << 20

// PutOptions describe an object written by Put.
type PutOptions struct {
	ContentType     string
	ContentEncoding string
	Metadata        map[string]string
}

// PutResult describes a written object.
type PutResult struct {
	ETag     string
	UploadID string // empty when the object fit in one part
}

// Put streams r into bucket/key. Objects larger than one part are uploaded
// with a multipart upload, which is aborted on failure (no partial object is
// ever visible under key).
func (s *Store) Put(ctx context.Context, bucket, key string, r io.Reader, o PutOptions) (PutResult, error) {
	in := &transfermanager.UploadObjectInput{Bucket: &bucket, Key: &key, Body: r, Metadata: o.Metadata}
	if o.ContentType != "" {
		in.ContentType = &o.ContentType
	}
	if o.ContentEncoding != "" {
		in.ContentEncoding = &o.ContentEncoding
	}
	out, err := s.uploader.UploadObject(ctx, in)
	if err != nil {
		var mu transfermanager.MultipartUploadError
		if errors.As(err, &mu) {
			s.log.ErrorContext(ctx, "multipart upload failed", "bucket", bucket, "key", key, "uploadId", mu.UploadID())
		}
		return PutResult{}, fmt.Errorf("upload s3://%s/%s: %w", bucket, key, unwrapCause(err))
	}
	return PutResult{ETag: aws.ToString(out.ETag), UploadID: aws.ToString(out.UploadID)}, nil
}

// ObjectInfo describes a stored object.
type ObjectInfo struct {
	Key          string
	Size         int64
	ETag         string
	LastModified time.Time
}

// Open streams bucket/key. The caller closes the reader. Errors while reading
// are returned by Read, never swallowed.
func (s *Store) Open(ctx context.Context, bucket, key string) (io.ReadCloser, ObjectInfo, error) {
	out, err := s.api.GetObject(ctx, &s3.GetObjectInput{Bucket: &bucket, Key: &key})
	if err != nil {
		return nil, ObjectInfo{}, fmt.Errorf("get s3://%s/%s: %w", bucket, key, mapErr(err))
	}
	info := ObjectInfo{Key: key, Size: aws.ToInt64(out.ContentLength), ETag: aws.ToString(out.ETag), LastModified: aws.ToTime(out.LastModified)}
	return out.Body, info, nil
}

// OpenRange streams bucket/key from byte offset on (Range: bytes=offset-),
// to resume reading an object where an earlier read stopped. When etag is
// not empty the read is conditional on it (If-Match): an object replaced
// since fails with an error wrapping ErrPrecondition, instead of yielding
// another version's bytes. ObjectInfo.Size is the size of the whole
// object. An offset at the object's end yields an empty reader (S3 serves
// no empty ranges; the size is then checked with a HEAD); an offset past
// it is an error. The caller closes the reader.
func (s *Store) OpenRange(ctx context.Context, bucket, key string, offset int64, etag string) (io.ReadCloser, ObjectInfo, error) {
	if offset < 0 {
		return nil, ObjectInfo{}, fmt.Errorf("get s3://%s/%s: negative offset %d", bucket, key, offset)
	}
	var ifMatch *string
	if etag != "" {
		if !strings.HasPrefix(etag, `"`) && !strings.HasPrefix(etag, "W/") {
			etag = `"` + etag + `"`
		}
		ifMatch = &etag
	}
	out, err := s.api.GetObject(ctx, &s3.GetObjectInput{
		Bucket: &bucket, Key: &key, Range: aws.String(fmt.Sprintf("bytes=%d-", offset)), IfMatch: ifMatch,
	})
	if invalidRange(err) {
		h, err := s.api.HeadObject(ctx, &s3.HeadObjectInput{Bucket: &bucket, Key: &key, IfMatch: ifMatch})
		if err != nil {
			return nil, ObjectInfo{}, fmt.Errorf("head s3://%s/%s: %w", bucket, key, mapErr(err))
		}
		info := ObjectInfo{Key: key, Size: aws.ToInt64(h.ContentLength), ETag: aws.ToString(h.ETag), LastModified: aws.ToTime(h.LastModified)}
		if info.Size != offset {
			return nil, ObjectInfo{}, fmt.Errorf("get s3://%s/%s from byte %d: the object has %d bytes", bucket, key, offset, info.Size)
		}
		return http.NoBody, info, nil
	}
	if err != nil {
		return nil, ObjectInfo{}, fmt.Errorf("get s3://%s/%s from byte %d: %w", bucket, key, offset, mapErr(err))
	}
	info := ObjectInfo{Key: key, ETag: aws.ToString(out.ETag), LastModified: aws.ToTime(out.LastModified)}
	// Content-Range: bytes <first>-<last>/<size>
	first, size, ok := parseContentRange(aws.ToString(out.ContentRange))
	if !ok || first != offset {
		out.Body.Close()
		return nil, ObjectInfo{}, fmt.Errorf("get s3://%s/%s from byte %d: the answer is not that range (Content-Range %q)",
			bucket, key, offset, aws.ToString(out.ContentRange))
	}
	info.Size = size
	return out.Body, info, nil
}

// parseContentRange reads "bytes <first>-<last>/<size>".
func parseContentRange(v string) (first, size int64, ok bool) {
	rest, ok := strings.CutPrefix(v, "bytes ")
	if !ok {
		return 0, 0, false
	}
	span, total, ok := strings.Cut(rest, "/")
	if !ok {
		return 0, 0, false
	}
	from, _, ok := strings.Cut(span, "-")
	if !ok {
		return 0, 0, false
	}
	first, err1 := strconv.ParseInt(from, 10, 64)
	size, err2 := strconv.ParseInt(total, 10, 64)
	return first, size, err1 == nil && err2 == nil
}

// invalidRange reports S3's answer to a range that starts at or past the
// object's end.
func invalidRange(err error) bool {
	if err == nil {
		return false
	}
	var ae smithy.APIError
	if errors.As(err, &ae) && ae.ErrorCode() == "InvalidRange" {
		return true
	}
	var re *awshttp.ResponseError
	return errors.As(err, &re) && re.HTTPStatusCode() == http.StatusRequestedRangeNotSatisfiable
}

// Head returns an object's metadata.
func (s *Store) Head(ctx context.Context, bucket, key string) (ObjectInfo, error) {
	out, err := s.api.HeadObject(ctx, &s3.HeadObjectInput{Bucket: &bucket, Key: &key})
	if err != nil {
		return ObjectInfo{}, fmt.Errorf("head s3://%s/%s: %w", bucket, key, mapErr(err))
	}
	return ObjectInfo{Key: key, Size: aws.ToInt64(out.ContentLength), ETag: aws.ToString(out.ETag), LastModified: aws.ToTime(out.LastModified)}, nil
}

// maxSmall bounds ReadSmall: ledger records and manifests are a few KiB.
const maxSmall = 4 << 20

// ReadSmall reads a small object (at most 4 MiB) whole, with its ETag.
func (s *Store) ReadSmall(ctx context.Context, bucket, key string) ([]byte, string, error) {
	rc, info, err := s.Open(ctx, bucket, key)
	if err != nil {
		return nil, "", err
	}
	defer rc.Close()
	b, err := io.ReadAll(io.LimitReader(rc, maxSmall+1))
	if err != nil {
		return nil, "", fmt.Errorf("read s3://%s/%s: %v", bucket, key, err)
	}
	if len(b) > maxSmall {
		return nil, "", fmt.Errorf("read s3://%s/%s: object over %d bytes", bucket, key, maxSmall)
	}
	return b, info.ETag, nil
}

// Condition is a write precondition for WriteSmall.
type Condition struct {
	IfNoneMatch bool   // create only: fail when the key exists
	IfMatch     string // replace only this version (ETag)
}

// WriteSmall writes data to bucket/key in one PutObject, under cond, and
// returns the new ETag. A lost condition (412 PreconditionFailed) returns
// an error wrapping ErrPrecondition.
//
// S3 answers 409 ConditionalRequestConflict when another conditional write
// to the key is in flight: that says nothing about the condition, and S3's
// documentation says to retry. WriteSmall retries it, up to
// conflictRetries times with a growing pause; past them the error does not
// wrap ErrPrecondition either.
func (s *Store) WriteSmall(ctx context.Context, bucket, key string, data []byte, contentType string, cond Condition) (string, error) {
	for attempt := 0; ; attempt++ {
		in := &s3.PutObjectInput{Bucket: &bucket, Key: &key, Body: bytes.NewReader(data), ContentType: &contentType}
		if cond.IfNoneMatch {
			in.IfNoneMatch = aws.String("*")
		}
		if cond.IfMatch != "" {
			in.IfMatch = aws.String(cond.IfMatch)
		}
		out, err := s.api.PutObject(ctx, in)
		if err == nil {
			return aws.ToString(out.ETag), nil
		}
		if !conditionalConflict(err) || attempt >= conflictRetries {
			return "", fmt.Errorf("put s3://%s/%s: %w", bucket, key, mapErr(err))
		}
		wait := conflictWait << attempt
		wait += time.Duration(mrand.Int64N(int64(wait)))
		s.log.DebugContext(ctx, "S3 conditional write conflict; retrying", "bucket", bucket, "key", key, "attempt", attempt+1, "wait", wait)
		t := time.NewTimer(wait)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return "", fmt.Errorf("put s3://%s/%s: %w", bucket, key, errors.Join(ctx.Err(), err))
		}
	}
}

// conflictRetries and conflictWait bound WriteSmall's retries of 409
// ConditionalRequestConflict: 5 retries, pausing 25ms, 50ms, … 400ms (plus
// up to as much again at random).
const (
	conflictRetries = 5
	conflictWait    = 25 * time.Millisecond
)

// conditionalConflict reports S3's 409 ConditionalRequestConflict.
func conditionalConflict(err error) bool {
	var ae smithy.APIError
	if errors.As(err, &ae) && ae.ErrorCode() == "ConditionalRequestConflict" {
		return true
	}
	var re *awshttp.ResponseError
	return errors.As(err, &re) && re.HTTPStatusCode() == http.StatusConflict
}

// Delete removes bucket/key; a missing key is not an error.
func (s *Store) Delete(ctx context.Context, bucket, key string) error {
	if _, err := s.api.DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: &bucket, Key: &key}); err != nil {
		if errors.Is(mapErr(err), ErrNotFound) {
			return nil
		}
		return fmt.Errorf("delete s3://%s/%s: %w", bucket, key, mapErr(err))
	}
	return nil
}

// List yields every object under prefix, in key order, page by page.
func (s *Store) List(ctx context.Context, bucket, prefix string) iter.Seq2[ObjectInfo, error] {
	return func(yield func(ObjectInfo, error) bool) {
		p := s3.NewListObjectsV2Paginator(s.api, &s3.ListObjectsV2Input{Bucket: &bucket, Prefix: &prefix})
		for p.HasMorePages() {
			page, err := p.NextPage(ctx)
			if err != nil {
				yield(ObjectInfo{}, fmt.Errorf("list s3://%s/%s: %w", bucket, prefix, mapErr(err)))
				return
			}
			for _, o := range page.Contents {
				info := ObjectInfo{Key: aws.ToString(o.Key), Size: aws.ToInt64(o.Size), ETag: aws.ToString(o.ETag), LastModified: aws.ToTime(o.LastModified)}
				if !yield(info, nil) {
					return
				}
			}
		}
	}
}

// mapErr turns S3's not-found and precondition answers into this package's
// sentinels, keeping the original error in the chain.
func mapErr(err error) error {
	var nsk *types.NoSuchKey
	var nf *types.NotFound
	if errors.As(err, &nsk) || errors.As(err, &nf) {
		return errors.Join(ErrNotFound, err)
	}
	var ae smithy.APIError
	if errors.As(err, &ae) {
		switch ae.ErrorCode() {
		case "NoSuchKey", "NotFound":
			return errors.Join(ErrNotFound, err)
		case "PreconditionFailed":
			return errors.Join(ErrPrecondition, err)
		}
	}
	var re *awshttp.ResponseError
	if errors.As(err, &re) {
		switch re.HTTPStatusCode() {
		case http.StatusNotFound:
			return errors.Join(ErrNotFound, err)
		case http.StatusPreconditionFailed:
			return errors.Join(ErrPrecondition, err)
		}
	}
	return err
}

// unwrapCause keeps context cancellation visible through the uploader's
// wrapping.
func unwrapCause(err error) error {
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return err
	}
	if strings.Contains(err.Error(), "context canceled") {
		return errors.Join(context.Canceled, err)
	}
	return mapErr(err)
}

// Part is one uploaded part of a multipart upload.
type Part struct {
	Number int32  `json:"n"`
	ETag   string `json:"etag"`
	Size   int64  `json:"size"`
}

// CreateMultipart starts a multipart upload of bucket/key and returns its
// upload id. The caller owns it: it must complete or abort it (a bucket
// lifecycle rule is the backstop, not the plan).
func (s *Store) CreateMultipart(ctx context.Context, bucket, key string, o PutOptions) (string, error) {
	in := &s3.CreateMultipartUploadInput{Bucket: &bucket, Key: &key, Metadata: o.Metadata}
	if o.ContentType != "" {
		in.ContentType = &o.ContentType
	}
	if o.ContentEncoding != "" {
		in.ContentEncoding = &o.ContentEncoding
	}
	out, err := s.api.CreateMultipartUpload(ctx, in)
	if err != nil {
		return "", fmt.Errorf("create multipart upload s3://%s/%s: %w", bucket, key, mapErr(err))
	}
	return aws.ToString(out.UploadId), nil
}

// UploadPart uploads data as part number n (1..10000) of an upload. Every
// part but the last must hold at least 5 MiB. Uploading a number again
// replaces that part.
func (s *Store) UploadPart(ctx context.Context, bucket, key, uploadID string, n int32, data []byte) (Part, error) {
	out, err := s.api.UploadPart(ctx, &s3.UploadPartInput{
		Bucket: &bucket, Key: &key, UploadId: &uploadID, PartNumber: &n,
		Body: bytes.NewReader(data), ContentLength: aws.Int64(int64(len(data))),
	})
	if err != nil {
		return Part{}, fmt.Errorf("upload part %d of s3://%s/%s: %w", n, bucket, key, mapErr(err))
	}
	return Part{Number: n, ETag: aws.ToString(out.ETag), Size: int64(len(data))}, nil
}

// CompleteMultipart assembles the parts (in order) into the object and
// returns its ETag.
func (s *Store) CompleteMultipart(ctx context.Context, bucket, key, uploadID string, parts []Part) (string, error) {
	cp := make([]types.CompletedPart, len(parts))
	for i, p := range parts {
		cp[i] = types.CompletedPart{PartNumber: aws.Int32(p.Number), ETag: aws.String(p.ETag)}
	}
	out, err := s.api.CompleteMultipartUpload(ctx, &s3.CompleteMultipartUploadInput{
		Bucket: &bucket, Key: &key, UploadId: &uploadID,
		MultipartUpload: &types.CompletedMultipartUpload{Parts: cp},
	})
	if err != nil {
		return "", fmt.Errorf("complete multipart upload s3://%s/%s: %w", bucket, key, mapErr(err))
	}
	return aws.ToString(out.ETag), nil
}

// AbortMultipart aborts an upload and frees its parts. An upload that no
// longer exists (already completed or aborted) is not an error.
func (s *Store) AbortMultipart(ctx context.Context, bucket, key, uploadID string) error {
	_, err := s.api.AbortMultipartUpload(ctx, &s3.AbortMultipartUploadInput{Bucket: &bucket, Key: &key, UploadId: &uploadID})
	if err != nil {
		var ae smithy.APIError
		if errors.As(err, &ae) && ae.ErrorCode() == "NoSuchUpload" {
			return nil
		}
		if errors.Is(mapErr(err), ErrNotFound) {
			return nil
		}
		return fmt.Errorf("abort multipart upload s3://%s/%s: %w", bucket, key, mapErr(err))
	}
	return nil
}
