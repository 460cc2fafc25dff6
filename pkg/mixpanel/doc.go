// Package mixpanel is a client for the Mixpanel APIs a bulk data mover
// needs: the raw event export, the engage (profiles) query, event imports
// (/import) and profile updates (/engage). It is the direct alternative to
// reaching Mixpanel through Cloud Elements (package ce), whose element
// authenticates with the project secret that Mixpanel retires on
// 2027-03-03.
//
// A [Client] is built once with [NewClient] from a service account and a
// project:
//
//	c, err := mixpanel.NewClient(mixpanel.Credentials{
//		ServiceAccountUser:   "export.1a2b3c.mp-service-account",
//		ServiceAccountSecret: secret,
//		ProjectID:            "2195193",
//		ProjectToken:         token, // for profile updates only
//	}, mixpanel.WithRegion(mixpanel.RegionEU))
//
// Every request carries HTTP Basic authentication with the service
// account and the project_id query parameter. [WithRegion] picks the hosts
// of a data residency region (see [Region.Hosts]); [WithBaseURL] puts all
// four APIs under one base URL instead, at the paths they have on their own
// hosts (/api/2.0/export, /api/query/engage, /import, /engage), for
// emulators and proxies.
//
// # Export
//
// [Client.Export] streams the raw events of a range of days (both dates
// inclusive) as JSON lines, asking for gzip and decompressing on the fly;
// [NewRecordReader] yields the events one at a time. Nothing is buffered
// whole.
//
// # Profiles
//
// [Client.Profiles] pages through an engage query with Mixpanel's
// session_id and page parameters and yields every profile as one stream. It
// stops after the first page holding fewer profiles than page_size. A
// refused session on a later page ends the stream with a [*PageError]
// matching [ErrSessionExpired].
//
// # Import and profile updates
//
// [Client.Import] sends events to /import in strict mode, in gzipped
// batches of at most [MaxBatchRecords] events and [MaxBatchBytes]
// uncompressed bytes, several batches in flight ([WithConcurrency]).
// [Client.UpdateProfiles] does the same for /engage (strict and verbose,
// not gzipped: the endpoint does not take it), adding the project's $token.
// Each input [Record] carries the caller's position (a line number), and
// every record Mixpanel refuses comes back as a [RecordError] with that
// position, whichever of Mixpanel's spellings ("insert_id", "$insert_id")
// the answer used. [Client.ImportBatch] and [Client.UpdateProfileBatch]
// send one batch.
//
// # Errors
//
// A non-2xx answer is an [*APIError]; it matches [ErrBadRequest] (400
// without per-record failures), [ErrUnauthorized] (401), [ErrForbidden]
// (403), [ErrTooLarge] (413) and [ErrRateLimited] (429) with errors.Is. A
// batch that fails as a whole is a [*BatchError] naming the positions of
// its records. A profile batch whose outcome is unknown is an
// [*UnknownOutcomeError]. A broken export stream is a [*DecodeError]. When
// a call fails because its context ended, the error wraps ctx.Err().
//
// Errors and log records never contain the service account secret, its
// user, the project token, the Authorization header or a query string:
// requests are named by method and API path only, and whatever Mixpanel
// echoes back is redacted.
//
// # Retries
//
// The client retries as Mixpanel asks: on 429, 502, 503 and 504 and on
// transport errors, waiting 2s doubling up to 60s plus 1s to 5s of random
// jitter, or the Retry-After header when present (capped at 60s, plus the
// jitter); see [WithRetry] and [WithRetryJitter]. Every wait ends early
// when the context is done. A 400, 401, 403 or 413 is never retried.
//
// What may be sent again depends on the request:
//
//   - exports, engage queries and /import batches are resent freely
//     (Mixpanel dedupes imported events on $insert_id); an export is
//     retried only until its body is handed to the caller, and every
//     attempt counts toward the rate limit of 60 queries an hour;
//   - an /engage batch is resent only when it provably never went out
//     (the connection could not be established) or Mixpanel
//     refused it (429, 503). Any other failure after the body went out is
//     an [*UnknownOutcomeError]: profile operations such as $add are not
//     idempotent.
//
// # Timeouts
//
// The default HTTP client has no overall Timeout, because that would also
// bound the reading of a long export. Bound each call with its context.
package mixpanel
