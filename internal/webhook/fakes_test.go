package webhook

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"

	"github.com/cebulk/cebulk/internal/ledger"
	"github.com/cebulk/cebulk/internal/s3stream"
	"github.com/cebulk/cebulk/internal/secrets"
	"github.com/cebulk/cebulk/pkg/ce"
)

// fakeJobs is an in-memory ledger with ETags, as S3 conditional writes give.
type fakeJobs struct {
	mu   sync.Mutex
	jobs map[string]ledger.Job
	tags map[string]int
}

func newFakeJobs(jobs ...ledger.Job) *fakeJobs {
	f := &fakeJobs{jobs: map[string]ledger.Job{}, tags: map[string]int{}}
	for _, j := range jobs {
		f.jobs[j.ID] = j
		f.tags[j.ID] = 1
	}
	return f
}

func (f *fakeJobs) Get(ctx context.Context, id string) (*ledger.Job, string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	j, ok := f.jobs[id]
	if !ok {
		return nil, "", fmt.Errorf("get job %s: %w", id, ledger.ErrNotFound)
	}
	if j.Handoff != nil {
		h := *j.Handoff
		j.Handoff = &h
	}
	return &j, strconv.Itoa(f.tags[id]), nil
}

func (f *fakeJobs) Update(ctx context.Context, j *ledger.Job, etag string) (string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if strconv.Itoa(f.tags[j.ID]) != etag {
		return "", ledger.ErrConflict
	}
	f.jobs[j.ID] = *j
	f.tags[j.ID]++
	return strconv.Itoa(f.tags[j.ID]), nil
}

func (f *fakeJobs) job(id string) ledger.Job {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.jobs[id]
}

type fakeCE struct {
	status ce.Status
	err    error
	calls  int
}

func (f *fakeCE) Status(ctx context.Context, id string) (*ce.Job, error) {
	f.calls++
	if f.err != nil {
		return nil, f.err
	}
	return &ce.Job{ID: id, Status: f.status, RecordsCount: 120}, nil
}

type fakeSecrets struct{ key string }

func (f fakeSecrets) Secret(ctx context.Context) (secrets.Secret, error) {
	return secrets.Secret{UserSecret: "u", OrganizationSecret: "o", ElementToken: "e", SignatureKey: f.key}, nil
}

type invocation struct {
	Function, Payload string
}

type fakeInvoker struct {
	mu    sync.Mutex
	calls []invocation
	err   error
}

func (f *fakeInvoker) InvokeAsync(ctx context.Context, fn string, payload []byte) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.err != nil {
		return f.err
	}
	f.calls = append(f.calls, invocation{fn, string(payload)})
	return nil
}

// fakeStore is an in-memory small-object store with S3's conditions.
type fakeStore struct {
	mu   sync.Mutex
	objs map[string][]byte
	tags map[string]int
}

func newFakeStore() *fakeStore { return &fakeStore{objs: map[string][]byte{}, tags: map[string]int{}} }

func (f *fakeStore) ReadSmall(ctx context.Context, bucket, key string) ([]byte, string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	b, ok := f.objs[key]
	if !ok {
		return nil, "", s3stream.ErrNotFound
	}
	return b, strconv.Itoa(f.tags[key]), nil
}

func (f *fakeStore) WriteSmall(ctx context.Context, bucket, key string, data []byte, ct string, cond s3stream.Condition) (string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	_, exists := f.objs[key]
	if cond.IfNoneMatch && exists {
		return "", errors.Join(s3stream.ErrPrecondition, errors.New("412"))
	}
	if cond.IfMatch != "" && (!exists || strconv.Itoa(f.tags[key]) != cond.IfMatch) {
		return "", errors.Join(s3stream.ErrPrecondition, errors.New("412"))
	}
	f.objs[key] = append([]byte(nil), data...)
	f.tags[key]++
	return strconv.Itoa(f.tags[key]), nil
}
