// Package exporter is the export pipeline: it plans day windows (and
// snapshots) of Mixpanel objects, starts one CE bulk query job per window,
// collects completed jobs into partitions of the data bucket, and sweeps up
// jobs whose callback never came. ExportFunction and cmd/cebulk both run
// it; all of its state is in the bucket, so any number of invocations may
// run at once.
//
// # Windows
//
// [Plan] is pure. A day object (activities) is exported one day of
// Config.Location at a time, [00:00, next 00:00) local time, so days with a
// daylight saving change last 23 or 25 hours, and only once the day ended
// Config.Lag ago. A scheduled run plans from the object's watermark
// (state/watermarks/<object>.json, "next" = the first day not yet
// exported), skipping days that already have a ledger job; a backfill plans
// exactly the days asked for. users is exported as a whole snapshot, one per
// run, named by the hour of the EventBridge event's time. A run starts at
// most Config.MaxJobs CE jobs, taking windows from each object in turn,
// and each takes its tokens from Config.Budget first (see below).
//
// # Jobs
//
// Each window has a deterministic ledger id (export-activities-2026-11-25,
// export-users-20261126T020000Z). Run creates the ledger record with
// If-None-Match: * before it starts the CE job, so a retried run, a
// duplicate event or a second operator request never starts a second CE job
// for a window; every later move is a conditional write (If-Match).
//
//	PENDING ─CE COMPLETED─► COLLECTING ─► DONE
//	   │                        └─ failure ─► PENDING (attempt + 1) … ─► FAILED
//	   ├─ CE ERROR/ABORTED/CANCELLED ─► new CE job (attempt + 1) … ─► FAILED
//	   └─ no news past Config.JobDeadline ─► EXPIRED (CE job cancelled)
//
// Attempts count the tries of a window: each CE job started and each
// failed collect. Config.MaxAttempts bounds them. A failed collect the
// ledger records returns no error (the result carries it): the sweep
// retries the window, and Lambda's retries of the invocation, which would
// spend the attempts within three minutes, are kept for failures that left
// no record.
//
// # Partitions
//
// A collect streams the CE download through the record framer (JSON is
// split and checked without being decoded), keeps the records whose own
// properties.time lies in the window (the others are counted as
// outOfWindow and never written), and gzips them one per line, as CE sent
// them, into a multipart upload of
// exports/<object>/<partition>/part-<ceJobId>.jsonl.gz. Records are
// compressed in blocks of 512 KiB, each its own gzip member (concatenated
// members are one valid gzip file), by GOMAXPROCS workers; the members are
// cut into parts of at least 5 MiB. Only once every record is in does it
// complete the upload, write _manifest.json, then _SUCCESS, then delete
// the partition's other parts, mark the job DONE and move the watermark
// over every contiguous DONE day. A CE job COMPLETED with failed records
// is published with "complete": false in its manifest, recorded in the
// ledger and logged at warn level.
//
// # Collects longer than one invocation
//
// After each part the collect checkpoints in the ledger record
// (ledger.Job.Collect): the multipart upload id, the parts and their
// ETags, the CE download's byte offset after the last record in them
// ([ce.Position]), the record counters, and the marshalled state of the
// part's running SHA-256. When the invocation's deadline (minus the safety
// margin) comes after at least one new checkpoint, the job goes back to
// PENDING without counting an attempt and Config.Continue queues another
// invocation ({"action":"collect"}); it resumes from the checkpoint, asking
// CE for the rest with Range: bytes=N- (accepted only as 206 with a
// matching Content-Range; otherwise the file is downloaded again and its
// first N bytes skipped). Attempts count failures, not continuations: a
// deadline without a new checkpoint is a failure, so a collect that cannot
// make progress ends FAILED.
//
// A collector takes a job with a lease (ledger.Job.LeaseUntil): its
// invocation's deadline plus a minute, so the lease follows the function's
// own timeout (Config.Lease from each checkpoint without a deadline). A
// collector killed outright (out of memory, SIGKILL) leaves the job
// COLLECTING; once the lease has passed the sweep counts the attempt and
// collects the job from its last checkpoint, continuing the same multipart
// upload. An upload is aborted when it is abandoned: the job ends FAILED or
// EXPIRED, or its CE job is replaced. Any failure before the upload is
// complete publishes nothing.
//
// Short invocations ([WithInvocation]) get proportionally smaller margins:
// at most a quarter of the invocation's length each.
//
// # Mixpanel's limits and clocks
//
// Every CE query job started (a run's window, a sweep's start or restart)
// first takes tokens from Config.Budget (internal/budget: one S3 object
// per deployment, conditional writes): 1 for a day, SnapshotCost of the
// last DONE snapshot's records for a snapshot. A spent budget defers the
// window; nothing fails because of it.
//
// A backfill is a durable run (runs.go, state/runs/<runId>.json, up to
// MaxRunDays): NewRun lists its days, oldest first; the request and then
// every sweep start PENDING days while tokens last and bring STARTED days
// up to date from the ledger; the run ends DONE or PARTIAL. A scheduled
// run also re-exports the Config.Lookback DONE days before the watermark,
// after the new days, once per scheduled event (its jobs carry the run
// id nightly-<event hour>); a manifest counts its Revision and names the
// revision it Replaced.
//
// Config.TimeBasis (timebasis.go) says what properties.time counts:
// BasisUTC cuts real instants of Config.Location's days, BasisProject the
// wall-clock readings of pre-2023 projects. A day is exportable once its
// real end plus Config.Lag has passed, whatever the basis.
//
// # Settings and logs
//
// ExportFunction's environment and `cebulk export`'s flags are checked by
// the same parsers in settings.go ([ParseObjects], [ParseDay],
// [ParseTimezone], [ParseLag], [ParseMaxJobs]), with the defaults
// [DefaultObjects], [DefaultLag] and [DefaultMaxJobs].
//
// Every log record about a job carries jobId, object, window (an ISO 8601
// interval) and partition, ceJobId once there is one, attempt and status;
// the timed steps (starting a CE job, uploading a part, publishing a
// partition, a whole collect) add their duration as durationMs.
//
// # Metrics
//
// Runs, sweeps and collects end by writing CloudWatch embedded-metric-format
// lines to Config.Metrics (metrics.go, one place): per day object the
// watermark's age in hours and the days pending ([Exporter.Freshness]),
// per collect the records and bytes published, and the budget left once
// there is a budget to read (the budgetLeft hook). JobsFailed counts jobs
// that end FAILED or EXPIRED. template.yaml's freshness alarm and dashboard
// read them.
//
// # Deviations from the design
//
//   - Replacing a published partition (a backfill of a done day), a
//     collect withdraws the old _SUCCESS once the download is complete and
//     checked, just before the new part becomes visible, so that a reader
//     listing part-* behind _SUCCESS never sees the old and the new part
//     side by side. A failed download leaves the old partition published;
//     a failure between the upload and the new manifest puts the old
//     _SUCCESS back.
//   - A collect stopped by the invocation's deadline before it
//     checkpointed anything new counts as a failed attempt, as does a
//     collector that lost its lease (it crashed or was killed): a window
//     that makes no progress must end FAILED rather than loop forever.
//   - The sweep polls a CE job at once when there is no Config.CallbackURL:
//     the one-minute wait exists only to let a callback arrive first.
//   - Sweeps, like runs, start at most Config.MaxJobs CE jobs each
//     (restarts included) and only as the query budget allows; the rest
//     wait for the next sweep.
//   - Backfill days that have not ended Config.Lag ago are left out and
//     reported (RunResult.NotReady) rather than failing the whole request.
//   - A record without a readable properties.time is counted as
//     outOfWindow: it cannot be placed in a day.
package exporter
