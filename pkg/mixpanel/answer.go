package mixpanel

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// IngestAnswer is Mixpanel's JSON answer to /import (strict mode) and to
// /engage (strict and verbose mode), for example
//
//	{"code":400,"error":"some data points in the request failed validation",
//	 "failed_records":[{"index":0,"$insert_id":"…","field":"properties.time","message":"…"}],
//	 "num_records_imported":999,"status":"Bad Request"}
//
// or, from /engage, {"status":1,"error":null}.
type IngestAnswer struct {
	Code          int            // "code": the HTTP status Mixpanel reports, when present
	Error         string         // "error"
	Status        string         // "status": "OK", "Bad Request", "1", "0", …
	Imported      int64          // "num_records_imported" (or /engage's "num_good_events"); -1 when absent
	FailedRecords []FailedRecord // "failed_records"
}

// FailedRecord is one entry of "failed_records". Mixpanel spells the
// insert ID "insert_id" in its OpenAPI file and "$insert_id" in its guide;
// both are read into InsertID. Index is -1 when Mixpanel sent an index that
// is not an integer.
type FailedRecord struct {
	Index      int
	InsertID   string // "insert_id" or "$insert_id" (events)
	DistinctID string // "$distinct_id" (profiles), as JSON text when not a string
	Field      string
	Message    string
}

// success reports whether the answer claims full success: no failed
// records, and status 1 or OK (or no status and no error).
func (a *IngestAnswer) success() bool {
	if len(a.FailedRecords) > 0 {
		return false
	}
	switch strings.ToLower(a.Status) {
	case "1", "ok":
		return true
	case "":
		return a.Error == ""
	}
	return false
}

// DecodeIngestAnswer decodes an /import or /engage answer body. The bare
// answers "1" and "0" of /engage without verbose mode become status "1"
// and "0". Anything else that is not a JSON object is an error.
func DecodeIngestAnswer(data []byte) (*IngestAnswer, error) {
	data = bytes.TrimSpace(data)
	switch string(data) {
	case "1", "0":
		return &IngestAnswer{Status: string(data), Imported: -1}, nil
	}
	var raw struct {
		Code          json.Number       `json:"code"`
		Error         json.RawMessage   `json:"error"`
		Status        json.RawMessage   `json:"status"`
		Imported      *json.Number      `json:"num_records_imported"`
		GoodEvents    *json.Number      `json:"num_good_events"`
		FailedRecords []json.RawMessage `json:"failed_records"`
	}
	if len(data) == 0 || data[0] != '{' {
		return nil, errors.New("mixpanel: answer is not a JSON object")
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	if err := dec.Decode(&raw); err != nil {
		return nil, fmt.Errorf("mixpanel: decode answer: %v", err)
	}
	a := &IngestAnswer{Error: rawText(raw.Error), Status: rawText(raw.Status), Imported: -1}
	if raw.Code != "" {
		code, err := strconv.Atoi(raw.Code.String())
		if err != nil {
			return nil, fmt.Errorf("mixpanel: decode answer: code %q", raw.Code)
		}
		a.Code = code
	}
	for _, n := range []*json.Number{raw.Imported, raw.GoodEvents} {
		if n != nil && a.Imported < 0 {
			v, err := strconv.ParseInt(n.String(), 10, 64)
			if err != nil || v < 0 {
				return nil, fmt.Errorf("mixpanel: decode answer: imported count %q", n.String())
			}
			a.Imported = v
		}
	}
	for _, r := range raw.FailedRecords {
		f, err := decodeFailedRecord(r)
		if err != nil {
			return nil, err
		}
		a.FailedRecords = append(a.FailedRecords, f)
	}
	return a, nil
}

func decodeFailedRecord(data json.RawMessage) (FailedRecord, error) {
	var raw struct {
		Index      json.RawMessage `json:"index"`
		InsertID   json.RawMessage `json:"insert_id"`
		DInsertID  json.RawMessage `json:"$insert_id"`
		DistinctID json.RawMessage `json:"$distinct_id"`
		Field      json.RawMessage `json:"field"`
		Message    json.RawMessage `json:"message"`
	}
	if err := json.Unmarshal(data, &raw); err != nil {
		return FailedRecord{}, fmt.Errorf("mixpanel: decode failed record: %v", err)
	}
	f := FailedRecord{
		Index:      -1,
		InsertID:   rawText(raw.InsertID),
		DistinctID: rawText(raw.DistinctID),
		Field:      rawText(raw.Field),
		Message:    rawText(raw.Message),
	}
	if f.InsertID == "" {
		f.InsertID = rawText(raw.DInsertID)
	}
	if i, err := strconv.ParseInt(string(raw.Index), 10, 32); err == nil && i >= 0 {
		f.Index = int(i)
	} else if v, err := strconv.ParseFloat(string(raw.Index), 64); err == nil && v >= 0 && v < 1<<31 && v == float64(int(v)) {
		f.Index = int(v)
	}
	return f, nil
}
