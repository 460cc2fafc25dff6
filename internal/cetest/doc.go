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
// Jobs move CREATED → RUNNING → COMPLETED (or ERROR, ABORTED, CANCELLED) as
// the clock in [Options.Now] passes [Options.CompletionDelay]; the emulator
// never needs real sleeps in tests. Uploads are validated record by record
// with Mixpanel's rules, and per-record failures are served by bulk/{id}/errors.
// Terminal jobs with a callback URL get a signed POST, delivered either
// synchronously by [Fake.DeliverCallbacks] or by the background loop started
// with [Fake.Start].
//
// Test hooks inject faults ([Fake.FailNext], [Fake.SlowNext],
// [Fake.CutNextDownload], [Fake.SetNextJobOutcome], [Fake.FailRecordsMatching])
// and inspect state ([Fake.Jobs], [Fake.Uploaded], [Fake.Requests],
// [Fake.Deliveries]). [Fake.Transport] serves the handler in memory, for
// tests under testing/synctest, which forbids real network.
package cetest
