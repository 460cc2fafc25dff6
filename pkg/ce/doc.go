// Package ce is a client for the Cloud Elements (SAP Open Connectors) bulk
// API, as used through the "mixpanel" element in the "general" hub.
//
// A [Client] is built once with [NewClient] from a base URL (production,
// staging, SAP Open Connectors or a local emulator) and the three
// [Credentials] of an element instance:
//
//	c, err := ce.NewClient("https://api.cloud-elements.com/elements/api-v2", creds)
//
// Every request carries the header
//
//	Authorization: User <userSecret>, Organization <orgSecret>, Element <elementToken>
//
// and goes to a path relative to the base URL, under hubs/general/bulk/...
// (see [WithHub]).
//
// # Bulk downloads
//
// [Client.StartQuery] creates a download job, [Client.Wait] polls
// [Client.Status] until the job is terminal, and [Client.Download] streams the
// result file. [NewRecordReader] decodes that stream one record at a time,
// whether CE framed it as a JSON array or as JSON lines; [NewCSVRecordReader]
// does the same for text/csv downloads. Nothing in this package reads a bulk
// file whole into memory. JSON records are framed without decoding them (one
// grammar-checking pass over the bytes, agreeing with encoding/json on what
// is valid and where records split); [RecordReader.NextView] hands each
// record out without a copy, and [RecordReader.Position] with
// [ResumeRecordReader] continue a stream from a byte offset (a ranged
// download) where an earlier reader stopped.
//
// # Bulk uploads
//
// [Client.Upload] streams an io.Reader to CE as multipart/form-data through an
// io.Pipe; [Client.Errors] pages through the per-record errors of a job.
//
// # Callbacks
//
// CE signs job-completion callbacks with the instance's
// "event.notification.signature.key". [ValidateSignature] checks the
// Elements-Webhook-Signature header against the raw body; [Sign] builds it.
//
// # Errors
//
// A non-2xx response is returned as an [*APIError]; it matches [ErrNotFound]
// (404), [ErrUnauthorized] (401) and [ErrRateLimited] (429) with errors.Is.
// A job that ends ERROR, ABORTED or CANCELLED makes [Client.Wait] return a
// [*JobError]. A record stream that cannot be decoded yields a
// [*DecodeError]. When a call fails because its context ended, the returned
// error wraps ctx.Err(), so errors.Is(err, context.DeadlineExceeded) works.
// Transport errors are wrapped with %w as well.
//
// Errors and log records never contain the Authorization header, the
// credentials, the callback URL (which may carry a token) or the query string
// of a request URL (which may carry paging tokens): paths are reported
// relative to the base URL and without their query.
//
// # Retries
//
// The client retries inside each call, with capped exponential backoff and
// full jitter between the minimum and the capped bound, honouring a
// Retry-After header (delta seconds or HTTP date, capped at the maximum
// wait). Every wait ends early when the context is done. Response bodies are
// drained (at most 64 KiB) and closed before a retry. The defaults are 4
// retries waiting between 500ms and 30s; see [WithRetry].
//
// What is retried depends on the request:
//
//   - Reads and idempotent writes (GET status, errors, jobs and downloads,
//     PUT cancel) are retried on transport errors, 429 and 5xx except 501.
//     A download is retried only until its body is handed to the caller.
//   - Job-creating POSTs ([Client.StartQuery]) are retried only when the
//     request provably never reached CE (the connection could not be
//     established) or when CE answered 429 or 503, which are refusals that
//     create no job. Any ambiguous failure, such as a timeout or a reset
//     after the request was sent, or a 500, 502 or 504, is returned to the
//     caller, because a job may have been created: retrying blindly could
//     start a second job. Callers decide, for example with their own
//     idempotency records.
//   - Requests whose body is a non-rewindable stream ([Client.Upload]) are
//     never retried; retry the whole upload instead.
//
// Nothing else is retried: in particular 400, 401, 403, 404 and 501 are
// returned at once.
//
// # Timeouts
//
// The default HTTP client has no overall Timeout, because that would also
// bound the reading of a multi-gigabyte download. Bound each call with its
// context instead; the default transport bounds the TLS handshake and the
// wait for response headers.
package ce
