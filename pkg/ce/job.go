package ce

import (
	"bytes"
	"encoding/json"
	"errors"
	"math/big"
	"strconv"
	"strings"
)

// Status is a bulk job status, normalised to upper case. Besides the
// constants below it may hold any other string CE sends; such unknown
// statuses are not terminal.
type Status string

// The documented CE bulk job statuses.
const (
	StatusCreated             Status = "CREATED"
	StatusStarted             Status = "STARTED"
	StatusRunning             Status = "RUNNING"
	StatusCompleted           Status = "COMPLETED"
	StatusAborted             Status = "ABORTED"
	StatusError               Status = "ERROR"
	StatusCancelled           Status = "CANCELLED"
	StatusCancellationPending Status = "CANCELLATION_PENDING"
)

// ParseStatus normalises a status string from CE: it trims space, upper
// cases, and maps the variants CANCELED to CANCELLED and COMPLETE to
// COMPLETED. Any other string is kept (upper case) as an unknown status.
func ParseStatus(s string) Status {
	u := strings.ToUpper(strings.TrimSpace(s))
	switch u {
	case "CANCELED":
		return StatusCancelled
	case "COMPLETE":
		return StatusCompleted
	case "CANCELATION_PENDING":
		return StatusCancellationPending
	}
	return Status(u)
}

// Terminal reports whether s is COMPLETED, ABORTED, ERROR or CANCELLED.
func (s Status) Terminal() bool {
	switch s {
	case StatusCompleted, StatusAborted, StatusError, StatusCancelled:
		return true
	}
	return false
}

// Failed reports whether s is a terminal status other than COMPLETED.
func (s Status) Failed() bool { return s.Terminal() && s != StatusCompleted }

// Job is the state of a CE bulk job, as returned by job creation, status
// and job listing calls. Its JSON decoding accepts both generations of CE's
// job shape: the ID as a string or a number; "status" or "jobStatus";
// "recordsCount", "recordCount" or "record_count" (number or numeric
// string); "recordsFailedCount", "errorCount" or "error_count";
// "object_name" or "objectName"; "job_direction" or "jobDirection";
// "message" or "statusMessage". Its JSON encoding uses the first of each.
type Job struct {
	ID                 string `json:"id"`
	Status             Status `json:"status"`
	ObjectName         string `json:"object_name,omitempty"`
	Direction          string `json:"job_direction,omitempty"` // DOWNLOAD or UPLOAD
	RecordsCount       int64  `json:"recordsCount"`            // records processed, failures included
	RecordsFailedCount int64  `json:"recordsFailedCount"`      // records that failed
	Error              string `json:"error,omitempty"`         // CE's error, set on failed jobs
	Message            string `json:"message,omitempty"`       // CE's message or statusMessage
}

// UnmarshalJSON decodes any of CE's job shapes (see Job).
func (j *Job) UnmarshalJSON(data []byte) error {
	var w struct {
		ID                 flexString `json:"id"`
		Status             *string    `json:"status"`
		JobStatus          *string    `json:"jobStatus"`
		RecordsCount       flexInt    `json:"recordsCount"`
		RecordCount        flexInt    `json:"recordCount"`
		RecordCountSnake   flexInt    `json:"record_count"`
		RecordsFailedCount flexInt    `json:"recordsFailedCount"`
		ErrorCount         flexInt    `json:"errorCount"`
		ErrorCountSnake    flexInt    `json:"error_count"`
		ObjectNameSnake    *string    `json:"object_name"`
		ObjectName         *string    `json:"objectName"`
		DirectionSnake     *string    `json:"job_direction"`
		Direction          *string    `json:"jobDirection"`
		Error              flexString `json:"error"`
		Message            flexString `json:"message"`
		StatusMessage      flexString `json:"statusMessage"`
	}
	if err := json.Unmarshal(data, &w); err != nil {
		return err
	}
	*j = Job{
		ID:                 w.ID.v,
		Status:             ParseStatus(firstString(w.Status, w.JobStatus)),
		ObjectName:         firstString(w.ObjectNameSnake, w.ObjectName),
		Direction:          strings.ToUpper(firstString(w.DirectionSnake, w.Direction)),
		RecordsCount:       firstInt(w.RecordsCount, w.RecordCount, w.RecordCountSnake),
		RecordsFailedCount: firstInt(w.RecordsFailedCount, w.ErrorCount, w.ErrorCountSnake),
		Error:              w.Error.v,
		Message:            w.Message.v,
	}
	if j.Message == "" {
		j.Message = w.StatusMessage.v
	}
	return nil
}

// firstString returns the first non-empty string.
func firstString(ss ...*string) string {
	for _, s := range ss {
		if s != nil && *s != "" {
			return *s
		}
	}
	return ""
}

func firstInt(ns ...flexInt) int64 {
	for _, n := range ns {
		if n.set {
			return n.v
		}
	}
	return 0
}

// flexInt decodes an integer sent as a JSON number or a numeric string.
// null and "" leave it unset.
type flexInt struct {
	v   int64
	set bool
}

var errBadCount = errors.New("ce: job count is not an integer")

func (n *flexInt) UnmarshalJSON(data []byte) error {
	data = bytes.TrimSpace(data)
	if string(data) == "null" {
		return nil
	}
	s := string(data)
	if len(data) > 0 && data[0] == '"' {
		if err := json.Unmarshal(data, &s); err != nil {
			return errBadCount
		}
		s = strings.TrimSpace(s)
		if s == "" {
			return nil
		}
	}
	v, ok := parseInteger(s)
	if !ok {
		return errBadCount
	}
	n.v, n.set = v, true
	return nil
}

// parseInteger parses a decimal integer, also in the float forms "41.0" and
// "4.1e1" that some JSON producers use for whole numbers.
func parseInteger(s string) (int64, bool) {
	if v, err := strconv.ParseInt(s, 10, 64); err == nil {
		return v, true
	}
	f, _, err := big.ParseFloat(s, 10, 128, big.ToNearestEven)
	if err != nil || !f.IsInt() {
		return 0, false
	}
	v, acc := f.Int64()
	return v, acc == big.Exact
}

// flexString decodes a JSON string, or a number as its decimal text
// (integral floats such as 1722.0 become "1722"). null leaves it empty.
// Objects and arrays are kept as compact JSON text.
type flexString struct{ v string }

func (s *flexString) UnmarshalJSON(data []byte) error {
	data = bytes.TrimSpace(data)
	switch {
	case len(data) == 0 || string(data) == "null":
		return nil
	case data[0] == '"':
		return json.Unmarshal(data, &s.v)
	case data[0] == '-' || (data[0] >= '0' && data[0] <= '9'):
		if v, ok := parseInteger(string(data)); ok {
			s.v = strconv.FormatInt(v, 10)
		} else {
			s.v = string(data)
		}
		return nil
	}
	var b bytes.Buffer
	if err := json.Compact(&b, data); err != nil {
		return err
	}
	s.v = b.String()
	return nil
}
