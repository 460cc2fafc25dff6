package mixpanel

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"iter"
	"net/http"
	"net/url"
	"strconv"
	"strings"
)

// ProfileQuery selects the profiles of an engage query. The zero value
// selects every user profile with all its properties.
type ProfileQuery struct {
	Where            string   // optional: a segmentation expression
	OutputProperties []string // optional: only these properties
	DistinctIDs      []string // optional: only these profiles
	FilterByCohort   string   // optional: a cohort ID (sent as {"id":<ID>})
	// IncludeAllUsers applies with FilterByCohort only: nil leaves
	// Mixpanel's default (true).
	IncludeAllUsers *bool
	DataGroupID     string // optional: group profiles of this group key
}

// form returns the form fields of the query, without paging.
func (q ProfileQuery) form() (url.Values, error) {
	f := url.Values{}
	if q.Where != "" {
		f.Set("where", q.Where)
	}
	if len(q.OutputProperties) > 0 {
		b, err := json.Marshal(q.OutputProperties)
		if err != nil {
			return nil, err
		}
		f.Set("output_properties", string(b))
	}
	if len(q.DistinctIDs) > 0 {
		b, err := json.Marshal(q.DistinctIDs)
		if err != nil {
			return nil, err
		}
		f.Set("distinct_ids", string(b))
	}
	if q.FilterByCohort != "" {
		id := strings.TrimSpace(q.FilterByCohort)
		if _, err := strconv.ParseUint(id, 10, 64); err != nil {
			return nil, fmt.Errorf("cohort ID %q is not a number", q.FilterByCohort)
		}
		f.Set("filter_by_cohort", `{"id":`+id+`}`)
		if q.IncludeAllUsers != nil {
			f.Set("include_all_users", strconv.FormatBool(*q.IncludeAllUsers))
		}
	}
	if q.DataGroupID != "" {
		f.Set("data_group_id", q.DataGroupID)
	}
	return f, nil
}

// defaultPageSize is the engage query's page size, used when an answer
// does not say.
const defaultPageSize = 1000

// EngagePage is one page of an engage query answer:
// {"page":0,"page_size":1000,"session_id":"…","status":"ok","total":N,"results":[…]}.
type EngagePage struct {
	Page      int               `json:"page"`
	PageSize  int               `json:"page_size"`
	SessionID string            `json:"session_id"`
	Status    string            `json:"status"`
	Total     int64             `json:"total"`
	Results   []json.RawMessage `json:"results"`
}

// DecodeEngagePage decodes one engage query answer and checks it: status
// "ok" (when present), a page_size that is not negative, and results that
// are JSON objects. Mixpanel's "$distinct_id" may be a string or a number;
// the profiles are returned as they came.
func DecodeEngagePage(data []byte) (*EngagePage, error) {
	var p EngagePage
	if err := json.Unmarshal(data, &p); err != nil {
		return nil, fmt.Errorf("mixpanel: decode engage page: %v", err)
	}
	if err := p.check(); err != nil {
		return nil, err
	}
	return &p, nil
}

func (p *EngagePage) check() error {
	if p.Status != "" && !strings.EqualFold(p.Status, "ok") {
		return fmt.Errorf("mixpanel: engage page status %q", p.Status)
	}
	if p.PageSize < 0 || p.Page < 0 {
		return fmt.Errorf("mixpanel: engage page %d with page_size %d", p.Page, p.PageSize)
	}
	for i, r := range p.Results {
		if len(r) == 0 || r[0] != '{' {
			return fmt.Errorf("mixpanel: engage page result %d is not a JSON object", i)
		}
	}
	return nil
}

// Profiles runs an engage query (POST /api/query/engage) and yields every
// profile of every page as one stream, in Mixpanel's order: page 0 without
// a session, then the session_id of the first answer with page 1, 2, …
// until a page holds fewer than page_size profiles (1000 when the answer
// does not say), or none.
//
// Each page is one query of the Query API's 60 an hour, so a snapshot of N
// profiles costs about N/1000 queries. Pages are retried like every
// request; a page that still fails ends the stream with a *PageError, which
// matches ErrSessionExpired when Mixpanel refused the session of a later
// page: start again from page 0 then, because a new session is a new
// snapshot. Stop ranging to abandon the query.
func (c *Client) Profiles(ctx context.Context, q ProfileQuery) iter.Seq2[json.RawMessage, error] {
	return func(yield func(json.RawMessage, error) bool) {
		form, err := q.form()
		if err != nil {
			yield(nil, fmt.Errorf("mixpanel: engage query: %v", err))
			return
		}
		var (
			session string
			yielded int64
		)
		for page := 0; ; page++ {
			if page > 0 {
				form.Set("session_id", session)
				form.Set("page", strconv.Itoa(page))
			}
			p, err := c.engagePage(ctx, form)
			if err != nil {
				yield(nil, pageError(page, yielded, err))
				return
			}
			if page == 0 {
				session = p.SessionID
			}
			for _, r := range p.Results {
				if !yield(r, nil) {
					return
				}
				yielded++
			}
			pageSize := p.PageSize
			if pageSize == 0 {
				pageSize = defaultPageSize // an answer without page_size: Mixpanel's size
			}
			if len(p.Results) < pageSize {
				return
			}
			if session == "" {
				yield(nil, pageError(page+1, yielded, errors.New("mixpanel: engage query: a full page came without a session_id to page on")))
				return
			}
		}
	}
}

// pageError wraps err for page, recognising a refused session.
func pageError(page int, yielded int64, err error) *PageError {
	pe := &PageError{Page: page, Yielded: yielded, Err: err}
	var apiErr *APIError
	if page > 0 && errors.As(err, &apiErr) && apiErr.StatusCode >= 400 && apiErr.StatusCode < 500 {
		switch apiErr.StatusCode {
		case http.StatusUnauthorized, http.StatusForbidden, http.StatusTooManyRequests:
		default:
			pe.sessionExpired = true
		}
	}
	return pe
}

// engagePage posts one engage query form and decodes the page.
func (c *Client) engagePage(ctx context.Context, form url.Values) (*EngagePage, error) {
	body := form.Encode()
	req, err := c.newRequest(ctx, http.MethodPost, c.query, engageQueryPath, nil, strings.NewReader(body))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	resp, err := c.bareDo(req, resend, false)
	if err != nil {
		return nil, err
	}
	defer drainAndClose(resp.Body)
	var p EngagePage
	if err := decodeJSON(resp.Body, &p); err != nil {
		if ctxErr := ctx.Err(); ctxErr != nil {
			err = ctxErr
		}
		return nil, fmt.Errorf("mixpanel: POST %s: read response: %w", engageQueryPath, err)
	}
	if err := p.check(); err != nil {
		return nil, err
	}
	return &p, nil
}
