// Package mpdirect is the Mixpanel backend: it serves the exporter's and the
// importer's backend interfaces with Mixpanel's own APIs (pkg/mixpanel and a
// service account) instead of CE bulk jobs, so the pipelines, the S3 layout,
// the ledger, runs, budget and reports stay the same above either backend.
//
// The pipelines speak CE's job model (pkg/ce's Job, statuses and errors);
// this package answers in it:
//
//   - Export: a Mixpanel export is synchronous, so StartQuery creates no
//     remote job. It returns a job already COMPLETED whose id names the
//     query (object, window and a nonce, so every attempt has its own part
//     file), Status reads the id back, and Download runs the export (the
//     raw export for activities, the paged engage query for users) and
//     streams it as JSON lines. Nothing calls back: a run queues the
//     collect at once, and the sweeps collect what is left. Mixpanel does
//     not serve byte ranges, so a collect resumed at an offset exports
//     again and skips that many bytes (RangeResult.Ranged false), as the
//     CE client does when CE ignores a range. An export run again that
//     ends before the offset changed (events deleted): Download answers
//     ce.ErrNotFound (the job's result is gone) and the exporter starts
//     the window again under a new job.
//   - Import: Upload sends a chunk's JSON lines in batches (activities to
//     /import in strict mode, profile updates to /engage), several in
//     flight. Mixpanel answers every batch, so the chunk's outcome is known
//     when Upload returns: a COMPLETED job whose failed records Errors
//     yields with their index in the chunk, as CE's error pages do. The
//     chunk's progress is kept in the bucket (state/mixpanel/chunks/), so a
//     chunk sent again after a deadline, a throttle or an error skips the
//     batches Mixpanel confirmed, and never sends a profile batch whose
//     answer was lost (its records are reported as of unknown outcome).
package mpdirect
