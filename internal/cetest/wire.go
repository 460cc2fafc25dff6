package cetest

import "encoding/json"

// The wire structs below are the emulator's own reading of the CE bulk API.
// They must not be shared with package ce: keeping two independent
// declarations is what lets the tests catch drift.

// wireError is CE's error body.
type wireError struct {
	RequestID string `json:"requestId"`
	Message   string `json:"message"`
}

// wireCreated answers a job-creating call (bulk/query, bulk/download, upload).
type wireCreated struct {
	ID         string `json:"id"`
	Status     string `json:"status"`
	InstanceID int64  `json:"instanceId"`
}

// wireStatus is the v2 shape of GET bulk/{id}/status, and the body of a
// completion callback (which adds callback-payload).
type wireStatus struct {
	ID                 string          `json:"id"`
	Status             string          `json:"status"`
	RecordsCount       int64           `json:"recordsCount"`
	RecordsFailedCount int64           `json:"recordsFailedCount"`
	ObjectName         string          `json:"object_name"`
	JobDirection       string          `json:"job_direction"`
	FileFormat         string          `json:"fileFormat,omitempty"`
	InstanceID         int64           `json:"instanceId"`
	StartTime          string          `json:"bulk_start_time,omitempty"`
	FinishTime         string          `json:"bulk_finish_time,omitempty"`
	Error              string          `json:"error,omitempty"`
	CallbackPayload    json.RawMessage `json:"callback-payload,omitempty"`
}

// wireJobItem is one element of GET bulk/jobs. Its id is a number, unlike
// everywhere else (reference §2.0).
type wireJobItem struct {
	ID              int64  `json:"id"`
	InstanceID      int64  `json:"instanceId"`
	ObjectName      string `json:"object_name"`
	JobDirection    string `json:"job_direction"`
	Status          string `json:"status"`
	RecordCount     int64  `json:"record_count"`
	ErrorCount      int64  `json:"error_count"`
	FileFormat      string `json:"fileFormat"`
	CreatedDate     int64  `json:"createdDate"`
	CompletionTime  int64  `json:"completion_time,omitempty"`
	JobQuery        string `json:"job_query,omitempty"`
	NotificationURL string `json:"notification_url,omitempty"`
}

// wireRecordError is one element of GET bulk/{id}/errors. Index is the
// 0-based position of the record in the uploaded file (of the data row, for
// CSV); for the failures SetNextJobFailedRecords adds to a download, it
// counts on from the records of the file.
type wireRecordError struct {
	Index  int64           `json:"index"`
	Status string          `json:"status"`
	Field  string          `json:"field,omitempty"`
	Record json.RawMessage `json:"record"`
}

// wireMetaData is the metaData part of an upload or of a bulk/query body.
type wireMetaData struct {
	Format          string          `json:"format"`
	FileName        string          `json:"fileName"`
	CallbackPayload json.RawMessage `json:"callback-payload"`
}

// wireDownloadRequest is the v3 body of POST bulk/download.
type wireDownloadRequest struct {
	ObjectName      string `json:"objectName"`
	Format          string `json:"format"`
	From            string `json:"from"`
	To              string `json:"to"`
	Where           string `json:"where"`
	Limit           int64  `json:"limit"`
	NotificationURL string `json:"notificationUrl"`
}
