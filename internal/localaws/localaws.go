package localaws

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"

	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/johannesboyne/gofakes3"
	"github.com/johannesboyne/gofakes3/backend/s3mem"
)

// Stack is S3 and Secrets Manager behind one endpoint, as AWS_ENDPOINT_URL
// expects: requests with an X-Amz-Target of secretsmanager.* go to Secrets
// Manager, everything else to S3. Serve it over plain http (gofakes3 stores
// aws-chunked framing as data over https; see the local-aws-stack notes).
type Stack struct {
	S3             http.Handler
	SecretsManager *SecretsManager
}

// New returns an empty in-memory stack for region.
func New(region string) *Stack {
	return &Stack{
		S3:             gofakes3.New(s3mem.New(), gofakes3.WithAutoBucket(false)).Server(),
		SecretsManager: NewSecretsManager(region),
	}
}

// ServeHTTP routes a request to the service it is for.
func (s *Stack) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if strings.HasPrefix(r.Header.Get("X-Amz-Target"), "secretsmanager.") {
		s.SecretsManager.ServeHTTP(w, r)
		return
	}
	s.S3.ServeHTTP(w, r)
}

// Dump copies every object of bucket into dir/<key> and returns how many it
// wrote, streaming each object to its file.
func Dump(ctx context.Context, c *s3.Client, bucket, dir string) (int, error) {
	n := 0
	p := s3.NewListObjectsV2Paginator(c, &s3.ListObjectsV2Input{Bucket: &bucket})
	for p.HasMorePages() {
		page, err := p.NextPage(ctx)
		if err != nil {
			return n, fmt.Errorf("list %s: %v", bucket, err)
		}
		for _, o := range page.Contents {
			key := *o.Key
			path := filepath.Join(dir, filepath.FromSlash(key))
			if !strings.HasPrefix(path, filepath.Clean(dir)+string(filepath.Separator)) {
				continue // a key that would escape dir
			}
			if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
				return n, err
			}
			out, err := c.GetObject(ctx, &s3.GetObjectInput{Bucket: &bucket, Key: &key})
			if err != nil {
				return n, fmt.Errorf("get %s: %v", key, err)
			}
			f, err := os.Create(path)
			if err != nil {
				out.Body.Close()
				return n, err
			}
			_, err = io.Copy(f, out.Body)
			out.Body.Close()
			if cerr := f.Close(); err == nil {
				err = cerr
			}
			if err != nil {
				return n, fmt.Errorf("write %s: %v", path, err)
			}
			n++
		}
	}
	return n, nil
}
