// Package mptest is an in-memory, stateful emulator of Mixpanel's own APIs
// as the direct backend uses them: the raw event export, the engage query,
// /import and /engage. It is the counterparty of the Mixpanel client's
// tests and of local runs, as package cetest is for Cloud Elements, and it
// shares no code with the client (pkg/mixpanel) nor with the record rules
// of internal/mixpanel: its rules are read from Mixpanel's documentation
// (the mixpanel/docs OpenAPI files and reference pages), so that tests of
// the client against it catch drift on either side.
//
// A [Fake] is an [http.Handler] serving every API under one base URL, with
// the paths they have on Mixpanel's own hosts:
//
//	GET  /api/2.0/export     raw export (data.mixpanel.com)
//	POST /api/query/engage   engage query (mixpanel.com; also /api/2.0/engage)
//	POST /import             import events (api.mixpanel.com)
//	POST /engage             profile updates (api.mixpanel.com)
//
// # Authentication
//
// The export, the engage query and /import take a service account's HTTP
// Basic credentials (base64 or, as Mixpanel also accepts, plain text) plus
// project_id. Wrong credentials answer 401, a missing or non-numeric
// project_id 400, another project's id 403. /import also accepts the
// project token as the Basic username with an empty password and no
// project_id. /engage takes no credentials but each update's $token, which
// must be the project's (stricter than Mixpanel, which answers 1 for a
// wrong token and drops the update later).
//
// Errors of the export and the engage query have the query APIs' shape
// {"request": "<path?query>", "error": "<message>"}; those of /import and
// /engage (strict) the ingestion shape {"code", "error", "status"}. Every
// 429 is the documented {"code":429,"error":"Project exceeded rate limits.
// Please retry the request with exponential backoff.","status":"Too Many
// Requests"}.
//
// # Export
//
// from_date and to_date (yyyy-mm-dd, both required) are inclusive. A UTC
// project (the default) reads them as UTC days; with [Options.LegacyTime]
// (a project created before 2023) they are days of [Options.Timezone] and
// every exported properties.time is that zone's wall-clock seconds, not
// UTC. event (a JSON array of names), where (see below), limit (1..100000)
// and time_in_ms are honoured. The answer is text/plain JSON lines, one
// {"event","properties":{"time","distinct_id","$insert_id",
// "mp_processing_time_ms",…}} per line, empty when nothing matches;
// gzip-compressed (Content-Encoding: gzip) when the client accepts gzip and
// the body exceeds 1400 bytes. The events are those of the [Generator] set
// with [Fake.SetGenerator] (generated per call and streamed, so memory
// stays flat whatever a day's size) followed by the stored ones (imported
// or added with [Fake.AddEvents], which adds late events to past days). As
// Mixpanel says, the export itself does not deduplicate; the emulator's
// store does (below).
//
// # Engage query
//
// Form-encoded (the body or the URL): where, distinct_id, distinct_ids,
// output_properties, session_id and page. Page 0 without session_id runs
// the query, caches the matching ids under a new session_id and answers
// {"page","page_size","session_id","status":"ok","total","results"} with
// at most [Options.PageSize] (1000) profiles {"$distinct_id",
// "$properties"}; later pages need that session_id and the same
// parameters. page > 0 without session_id is a 400; a session unused for
// [Options.SessionTTL] expires, and using it then answers 400 "request for
// page in uncached query for params …" (Mixpanel's text for a page asked
// of a query it no longer caches). behaviors, filter_by_cohort and
// data_group_id are refused with 400.
//
// A where expression (export and engage query) is understood in its basic
// forms only: properties["name"] compared with == != > >= < <= to a
// double-quoted string or a number, defined(properties["name"]) and not
// defined(...), joined by "and". Anything else is a 400, so a client never
// silently gets unfiltered data.
//
// # Import
//
// The body is a JSON array, or JSON lines (Content-Type
// application/x-ndjson, or a body starting with '{'), optionally gzip
// (Content-Encoding: gzip). More than [MaxImportEvents] events or more
// than [Options.MaxImportBytes] (2 MiB, the OpenAPI 413 example; the guide
// says 10 MB) uncompressed answers 413; a broken array 400. Each event must
// be a JSON object of event and properties only; event a non-empty string;
// properties.time seconds or milliseconds, not before 1971-01-01 nor more
// than an hour ahead of [Options.Now] (a time within that hour becomes
// now); properties.distinct_id a string or number that is not one of the
// documented placeholders (anon, null, 0, -1, the zero UUID, …);
// properties.$insert_id at most 36 bytes of [A-Za-z0-9-] and not a
// placeholder; fewer than 255 properties, nested objects of fewer than 255
// keys, arrays of fewer than 255 items, nesting at most 3 deep, valid
// UTF-8, under 1 MB. With strict=1 any failure answers 400 {"code":400,
// "error","failed_records":[{"index","$insert_id","field","message"}],
// "num_records_imported","status":"Bad Request"}, a partial success: the
// valid events are stored. [Options.InsertIDKey] switches the insert id's
// key to "insert_id", the OpenAPI file's spelling. Otherwise the answer is
// 200 {"code":200,"num_records_imported":N,"status":"OK"} (without strict,
// invalid events are dropped silently).
//
// Stored events are deduplicated on (event, distinct_id, time,
// $insert_id): an event imported twice is stored once, the later copy
// replacing the earlier. [Fake.Imported] and [Fake.ImportStats] read the
// store.
//
// # Profile updates
//
// /engage takes a JSON array (or a form field data) of at most 2000
// updates {"$token","$distinct_id", one operation}, the operations being
// $set $set_once $add $union $append $remove $unset $delete; gzip bodies
// are refused. The answer is text/plain 1 when at least one update is
// valid, 0 when none is; with verbose=1 {"status":1|0,"error":null|"…"};
// with strict=1 200 {"code":200,"num_records_imported","status":"OK"} or
// 400 with failed_records [{"index","$distinct_id","field","message"}].
// Valid updates are applied to the profiles the engage query serves;
// [Fake.Profiles] and [Fake.Updates] read them.
//
// # Limits and faults
//
// The export and the engage query each count calls per rolling hour
// ([Options.ExportPerHour], [Options.QueryPerHour], 60 by default) and the
// export 3 per second; at most [Options.ExportConcurrency] (100) exports
// and [Options.QueryConcurrency] (5) engage queries run at once (a call
// refused for that is not counted); /import and /engage together accept
// [Options.IngestBytesPerMinute] uncompressed body bytes per rolling minute
// (Mixpanel's 2 GB); beyond any of these, 429. [Fake.Fail] injects a status (429,
// 5xx, …), with or without Retry-After, for a number of calls or until an
// instant, and a Delay that holds the answer (a timeout); [Fake.FailNext]
// is the one-call form; [Fake.CutNextExport] cuts an export's connection
// mid-body. [Fake.Requests] records every request (route, method, path,
// query, encodings, status; never credentials or bodies).
// [Fake.Transport] serves the handler in memory, for tests under
// testing/synctest.
package mptest
