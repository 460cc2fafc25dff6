// Package cetest is an in-memory, stateful emulator of the Cloud Elements
// (SAP Open Connectors) bulk API as served by the "mixpanel" element. It is
// the counterparty of every test that talks to CE and of the local demo.
//
// A [Fake] is an [http.Handler]. It serves the bulk routes under any path that
// contains /elements/api-v2, both with the /hubs/general hub prefix and
// without it:
//
//	POST bulk/query              create a download job from CEQL (q, from, to)
//	POST bulk/download           create a download job from a v3 JSON body
//	GET  bulk/{id}/status        job status (v2 shape)
//	GET  bulk/{id}/errors        per-record errors, paged (pageSize, nextPage)
//	GET  bulk/{id}/{object}      the downloaded records, streamed
//	PUT  bulk/{id}/cancel        cancel a job
//	GET  bulk/jobs               list jobs, paged, with a minimal where
//	POST bulk/{object}           upload a file (multipart: file + metaData)
//
// The wire structs are declared here, independently of package ce, so that
// tests of the client against the emulator catch drift on either side.
//
// The emulator follows the CE bulk API reference
// (reference/cloud-elements-bulk-api.md beside the design document). Where
// the reference marks a behaviour as unverified, the emulator makes a choice
// and documents it:
//   - a download of activities selects records by properties.time, from
//     inclusive and to exclusive (reference §6 Q2 leaves CE's real
//     interpretation open); from and to are ignored for users;
//   - a CEQL where clause is honoured only for comparisons of the form
//     properties["name"] op "value" (or a number) joined by and; any other
//     where clause is ignored;
//   - a completion callback is the status body plus "callback-payload";
//   - a per-record error is {"index": n, "status": "message", "field": "...",
//     "record": {...}}, index counting records of the file from 0;
//   - cancelling goes straight to CANCELLED (no CANCELLATION_PENDING).
//
// Uploads take JSON or CSV, as metaData's format says (reference §2.8):
// "json" reads a JSON array or JSON lines; "csv", or no format at all,
// reads CSV. A file sent without any metaData before it is read by its
// first byte ('[' or '{': JSON, else CSV), and a later metaData must agree.
// A CSV file is parsed as a stream with encoding/csv; its header row names
// the columns, and each data row becomes a record of the JSON shape:
//   - activities: column event is the event; every other column (time,
//     distinct_id, $insert_id, ...) is a property, so a row is
//     {"event": ..., "properties": {"time": ..., "distinct_id": ..., ...}};
//     the properties. prefix of the emulator's own CSV downloads is dropped;
//   - users: column $distinct_id (or distinct_id) is $distinct_id and every
//     other column goes under $set (prefixes $set. and $properties.
//     dropped): {"$distinct_id": ..., "$set": {...}};
//   - an empty cell is an absent field; identifiers (event, distinct_id,
//     $insert_id, $distinct_id) stay strings, and any other cell that is a
//     plain decimal number (an optional minus, digits without a leading
//     zero, an optional fraction; no plus sign, exponent or spaces) becomes
//     a JSON number, so "1764000000" is a number and "007" a string.
//
// The records then meet the same Mixpanel rules as JSON records, and errors
// count data rows from 0 (the header and blank lines are not counted). A
// row with the wrong number of fields is a failed record whose "record" is
// the row's cells as a JSON array. A header without a name or with two
// columns for one field, a CSV syntax error (a stray or unterminated quote)
// or a row over 1 MB refuses the whole file with 400, as a broken JSON array
// does. [Fake.Uploaded] holds accepted CSV rows in their JSON shape.
//
// Jobs move CREATED → RUNNING → COMPLETED (or ERROR, ABORTED, CANCELLED) as
// the clock in [Options.Now] passes [Options.CompletionDelay]; the emulator
// never needs real sleeps in tests. Uploads are validated record by record
// with Mixpanel's rules, and per-record failures are served by bulk/{id}/errors.
// Terminal jobs with a callback URL get a signed POST, delivered either
// synchronously by [Fake.DeliverCallbacks] or by the background loop started
// with [Fake.Start].
//
// Mixpanel's limits and clocks: [Fake.Throttle] refuses matching calls
// with 429 (or 503), with or without Retry-After, for a period or a number
// of calls; [Fake.AddRecords] adds late events to days exported before;
// [Options.WholeDays] makes from/to select whole days, as the element's
// from_date/to_date do, and [Options.ProjectTimezone] serves a pre-2023
// project whose days and properties.time are wall-clock time of its zone
// ([WallClock]); [Job.QueryCost] and [Fake.QueryCost] report what download
// jobs cost the project's query budget (⌈profiles/1000⌉ for users).
//
// Test hooks inject faults ([Fake.FailNext], [Fake.SlowNext],
// [Fake.CutNextDownload], [Fake.SetNextJobOutcome],
// [Fake.SetNextJobFailedRecords], [Fake.FailRecordsMatching]) and inspect
// state ([Fake.Jobs], [Fake.Uploaded], [Fake.Requests], [Fake.Deliveries]).
// [Fake.SetNextJobFailedRecords] gives the partial success of reference
// §2.3: a download job that ends COMPLETED with recordsFailedCount n > 0,
// recordsCount the records in its file plus n, and n errors served by
// bulk/{id}/errors. [Fake.Transport] serves the handler in memory, for
// tests under testing/synctest, which forbids real network.
package cetest
