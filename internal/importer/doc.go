// Package importer loads record files dropped under imports/<object>/ in
// the data bucket into Mixpanel through Cloud Elements bulk uploads, and
// reports what was accepted and what was rejected and why. The
// ImportFunction and cmd/cebulk share it.
//
// # Flow
//
// [Importer.HandleObject] takes an S3 object version (bucket, key, ETag).
// The key decides the object (imports/activities/… or imports/users/…) and
// whether it is a dry run (imports/<object>/dry-run/…); any other key gets
// a FAILED summary under reports/imports/_invalid/<key>/ and no error, so
// Lambda does not retry it. The import's id is
// import-<first 16 hex digits of sha256(bucket/key/etag)>, and its ledger
// record is created with If-None-Match: *, so a repeated S3 event does
// nothing.
//
// The object is streamed from S3 through internal/recordio (format by
// name, sniffing as a fallback, gzip by magic bytes) and internal/mixpanel
// (Mixpanel's rules, normalised JSON lines). Valid records go to CE in
// chunks of Config.ChunkRecords, one bulk upload job per chunk; the body of
// each upload is pulled from the S3 stream as CE's request reads it, so no
// chunk is ever held in memory. Rejected rows stream, gzip-compressed, into
// one S3 object per chunk ("rejects part"); finalize concatenates them
// (concatenated gzip members are one valid gzip file). The source line of
// every record a chunk sends streams likewise into the chunk's line index
// (state/imports/<importId>/chunk-000n.lines.gz: gzip of unsigned varints,
// each record's line minus the previous record's, in upload order), so
// that finalize can name the line of each record CE fails. Memory is
// bounded by one record, the read and gzip buffers, and the S3 uploader's
// part buffers, whatever the file's size.
//
// # Exactly-once chunks
//
// The import record (kind import) holds the checkpoint: chunks done, items
// read (records and undecodable rows), the source line reached, the
// counts, the committed rejects parts, the first chunk with a line index,
// and where the reader stood (see Resume below). Chunk n has its own ledger
// record, import-<hash>-chunk-000n, created with If-None-Match before its
// upload starts (status UPLOADING), then updated with the CE job id
// (PENDING) once CE answers. After every chunk the checkpoint moves past it
// in one conditional write, which is also the worker's heartbeat.
//
// Whether CE may have created a job is decided from how far the upload got:
//   - CE answered with a job: the chunk is sent.
//   - The body never reached its end (the deadline came, the S3 read
//     failed, CE refused early with 401): CE saw a truncated
//     multipart request and cannot have made a job. The chunk record goes
//     back to PENDING without a job and the chunk is sent again later (at
//     most Config.MaxAttempts refusals).
//   - CE answered 429 or 503 (a rate limit, Mixpanel's passed through):
//     a refusal that created no job, and no attempt of the chunk's. The
//     chunk record goes back to PENDING without a job, the source is
//     opened again at the checkpoint (the span's records went into the
//     refused request) and the chunk is streamed again after the wait CE
//     asked for (Retry-After) or, without one, Mixpanel's advice: 2 s
//     doubling to 60 s, plus 1–5 s of jitter ([MixpanelBackoff]). When
//     the wait outlasts the invocation, the import is released PENDING
//     with RateLimited set (no failure counted, no immediate re-invocation:
//     an outage can last hours) and the invocation answers StatusRetry;
//     the sweep resumes it. The invocation succeeds either way.
//   - CE refused it for good (another 4xx): the chunk is FAILED and the
//     import stops (FAILED), since CE will refuse the rest too.
//   - The whole body was sent but the answer was lost (timeout, reset,
//     500/502/504): the outcome is unknown. The chunk is marked FAILED
//     with that reason and never sent again; the summary lists it, with its
//     record count, so nothing is silently lost or sent twice. CE's job list
//     cannot settle it: its items do not carry anything we sent (the
//     ce.Job of a listing has no callback URL), so a match would be a
//     guess.
//   - A chunk record found UPLOADING by a later worker means the worker
//     uploading it died without recording the outcome: unknown, as above.
//
// # Resume
//
// A resume continues reading exactly where the last committed span ended,
// so every later chunk holds the records it would have held without the
// interruption. With each commit the checkpoint stores the reader's
// position (recordio.Resume: the offset in the content just past the
// span's last item, the lines before it, the format, and a CSV file's
// header and delimiter). The object is then opened again:
//   - a plain file (CSV, JSON lines, a JSON array) from that offset, with
//     a ranged GET conditional on the import's ETag (If-Match). A resume
//     costs the same wherever it starts, and an object replaced since
//     fails the import instead of resuming into another version's bytes;
//   - a gzipped file from its start, because a position inside gzip data
//     is only reachable by decompressing up to it: the content before the
//     offset is decompressed and dropped without being decoded;
//   - under a checkpoint written before positions were kept (no "resume"
//     field), from its start, and the first Records items are decoded
//     again and dropped.
//
// The reader's counts start at the offset; BlankRows is carried over.
// Validation runs with the "now" fixed when the import started, so every
// record is classified as before and chunk boundaries never move. A chunk
// found already uploaded (the worker died between the upload and the
// checkpoint) is skipped record by record (its span's rejects are written
// again into a part with the same key, which only a committed checkpoint
// lists, and its line index again, byte for byte, under its key).
//
// # Deadline
//
// Work stops Config.SafetyMargin (at most a quarter of the time the
// invocation has left when it starts) before the context's deadline. No
// chunk starts unless the time left exceeds one and a half times the last
// chunk's duration, and a chunk still streaming when the margin is reached
// is abandoned before its body is complete (so CE cannot have a job from
// it). The import record is then released (PENDING) with its checkpoint,
// and the reinvoke function starts {"action":"resume","importId":…}. A
// worker that dies leaves the record UPLOADING; after Config.Lease without
// a heartbeat the next resume, repeated event or sweep takes it over.
// [MaxChunks] makes an invocation checkpoint after a number of chunks:
// tests use it to force the resume path.
//
// # Reports
//
// When every chunk is uploaded, finalize reads each chunk's CE job status
// (recording terminal states in the chunk records) and, when all are
// terminal, writes under reports/<key>/ (dry runs: under
// reports/imports/<object>/dry-run/<name>/):
//   - ce-errors.jsonl: one line per element of each chunk's paged
//     GET bulk/{id}/errors, streamed: {"chunk","jobId","ceJobId","line",
//     "index","error"}. error is CE's element verbatim (an object or a
//     string). index is the record's 0-based position in the chunk's
//     upload, when the element is an object with a non-negative integer
//     "index" (the emulator's field) or "recordIndex"; a "row" field is not
//     read, since its base (0 or 1, header or not) is unknown and a wrong
//     line is worse than none. line is the source line that record starts
//     on, from the chunk's line index, read alongside the errors (which
//     come in index order from the emulator, and we expect from CE). An
//     error before the previous one in the same
//     chunk makes finalize read that chunk's index into memory (4 bytes a
//     record) when the chunk has at most 1,000,000 records; otherwise, and
//     for elements without an index, an index past the chunk's end, or
//     chunks without a line index (committed by a version that wrote none),
//     line is omitted;
//   - rejects.jsonl.gz: {"line","reason","record"} for every row not sent;
//   - summary.json, last; its ceErrors and ceErrorsWithLine count the lines
//     of ce-errors.jsonl and those with a line.
//
// summary.json is one JSON line, so that Athena reads it. After it,
// finalize writes the lake's index: two one-line symlink files,
// reports/lake/import_summaries/dt=<day finished>/<importId>.txt and
// reports/lake/import_rejects/…, naming summary.json and rejects.jsonl.gz
// (internal/lake). A finished import that is not a dry run writes one EMF
// line with its RowsSent, RowsRejected and RowsCERejected.
//
// The summary's status is FAILED
// when the file could not be read (through), the import gave up, or nothing
// was accepted; PARTIAL when rows were rejected, CE failed records, or a
// chunk failed; SUCCEEDED otherwise. Finalize runs right after the upload
// (dry runs and quick CE jobs finish at once), on the webhook's
// {"action":"finalize","jobId":<chunk id>} and from [Importer.Sweep]; a
// COLLECTING status taken with If-Match makes one of them write the
// report, and a finished import is never reported again. A FAILED import
// writes an EMF JobsFailed metric line.
//
// # Sweep
//
// [Importer.Sweep] (the ImportFunction's schedule, every 5 minutes)
// finalizes the imports whose callbacks never came and resumes the ones
// that stalled or whose last invocation failed. A failure an import's
// record holds (the invocation released it with a failure counted, or a
// finalize noted its error) returns [StatusRetry] and no error: the sweep,
// not Lambda's two retries within three minutes, tries again, so a blip of
// a few minutes costs one of Config.MaxAttempts. Only failures no record
// holds are returned as errors, for Lambda to retry. Ledger records live StateRetentionDays (90 by default), so
// it finds the open imports through markers rather than by reading every
// record: its cost follows the open imports, not the ledger's history.
//   - HandleObject creates state/imports/open/<importId> (If-None-Match; a
//     marker already there is kept) before the import record, so no import
//     record exists without its marker. A crash between the two writes
//     leaves a marker without a record, which is harmless.
//   - Finalize deletes the marker after the record's final write. A crash
//     (or a failed delete) in between leaves a marker whose record is
//     final. A repeated event for a finished import makes the marker again,
//     and deletes it once it finds the record final.
//   - The sweep lists state/imports/open/ and reads the record each marker
//     names. An open import is handled as before (finalized when its
//     upload is over, resumed when its lease lapsed). A final one has its
//     marker deleted. A missing one has its marker deleted once the marker
//     is older than Config.Lease: younger, its HandleObject may still be
//     between the two writes; older, the event that made it gave up, and
//     the import never started (the warning names the key).
//   - A retry of that event may come hours later (the asynchronous event
//     age), and race the sweep deleting the old marker. So after deleting
//     it the sweep reads the record once more and makes the marker again
//     if the record has appeared, and HandleObject, after creating the
//     record, makes the marker again if it is gone. Whatever the order of
//     their requests, the open import keeps its marker.
//
// Imports started by an earlier version have no marker; those in flight at
// the deploy are still finalized by their callbacks. As a safety net, for
// them and for a marker lost some other way (deleted by hand, expired with
// state/imports/), a sweep also lists every import record and reads each,
// as sweeps did before the markers, when the last such full listing
// started Config.FullListingEvery (default one hour) ago or more. It marks
// the open imports it finds without a marker (reported as adopted), which
// later sweeps then see. The first sweep after the deploy has no record of
// a full listing, so it starts one at once. The listing's progress is
// state/sweeps/imports.json: a sweep takes the listing with a conditional
// write of it, saves the last key it handled every 500 records or minute
// (its heartbeat), and at its deadline saves and releases it. The next
// sweep goes on after that key; while one holds the listing, the others
// leave it alone, until its heartbeat is older than Config.Lease (it
// died). The schedule's clock time plays no part: rate(5 minutes) does not
// say at which minutes it runs.
//
// A sweep thus costs one LIST of the markers, one GET of the sweep's state,
// and one GET per open import, plus what handling it takes (finalize reads
// the record again, its chunks' records and CE's statuses). The full
// listing costs one GET per import record, once an hour.
//
// # Deviations from the design notes
//
//   - The checkpoint is an extra "import" field of the import's ledger
//     record, written by this package through the ledger's conditional
//     writes (ledger.Job has no field for it). Other readers of the ledger
//     see an ordinary job; only this package writes import records.
//   - Rejects parts and line indexes live under state/imports/<importId>/,
//     not under reports/, so a report directory holds exactly its three
//     files; they are deleted once the import is final.
//   - The open-import markers live under state/imports/open/ and the
//     sweep's state at state/sweeps/imports.json; the ledger has no index
//     of open jobs.
//   - A file that breaks mid-way (truncated gzip, a JSON array cut short,
//     an unclosed CSV quote) still sends the valid records read before the
//     break, in the chunk being filled; the summary is FAILED and names the
//     problem and the line.
//   - A chunk whose CE job ends ERROR or ABORTED is not uploaded again: the
//     job may have applied some records, and profile operations such as
//     $add are not idempotent. The summary reports it (PARTIAL).
package importer
