// Package recordio reads record files (CSV, JSON lines, JSON arrays, each
// optionally gzipped) as a stream of records, one at a time, with the line
// each record starts on.
//
// It is the first step of an import: a user's file is read from S3 as a
// stream, never whole and never staged on disk, so memory stays flat
// however large the file is. The largest buffers are one record's text
// (Options.MaxLineBytes), two 64 KiB read buffers (one before and one
// after decompression) and gzip's 32 KiB window; tests check that the
// heap in use reading 200,000 records is the same few MiB as for 2,000,
// and that a 100 MB line is refused within 16 MiB.
//
// # Formats
//
// [Open] picks the format from the file name, ignoring a trailing ".gz":
//   - ".csv": CSV with a header row;
//   - ".json", ".jsonl", ".ndjson": JSON. The first non-space byte decides
//     between a JSON array ('[') and JSON lines ('{'); anything else is a
//     [*FileError]. CE itself treats "json" as "one object per line, or an
//     array", so the extension alone cannot tell them apart;
//   - any other name: the content decides: '[' is a JSON array, '{' is JSON
//     lines, other text is CSV.
//
// Compression is decided by the content, never by the name: gzip's magic
// bytes (1f 8b) mean gzip whatever the name says, and a ".gz" name over
// plain bytes (for example an object that was transparently decompressed
// because of its Content-Encoding) is read as plain. Concatenated gzip
// members are read as one stream. A UTF-8 byte-order mark is skipped. UTF-16
// files, binary files (NUL bytes, known magic numbers such as ZIP/XLSX,
// PDF, Parquet) and text that is not UTF-8 within the first 8 KiB are
// refused with a [*FileError] that says what the file looks like.
// An empty (or whitespace-only) file is a [*FileError] too: an upload with
// nothing in it is a mistake worth reporting, not a successful import of
// zero records.
//
// # Errors
//
// [Reader.Next] distinguishes three kinds of problem:
//   - a per-row problem (invalid JSON on one line, a CSV row with the wrong
//     number of columns, an array element that is not an object, a record
//     longer than Options.MaxLineBytes where the format lets reading resume)
//     is returned in [Item].Err as a [*RowError]; the row is rejected and
//     reading continues;
//   - a problem that stops the file from being read any further (corrupt or
//     truncated gzip, a JSON array cut short, a CSV quoted field that is
//     never closed, a CSV record longer than the limit, too much
//     decompressed data) is a [*FileError];
//   - an error from the underlying reader (the S3 stream) is returned
//     wrapped, so callers can tell "the file is bad" (do not retry) from
//     "the read failed" (retry the step).
//
// Fatal errors and io.EOF are sticky: every later call returns them again.
//
// # Limits
//
// A record's text is bounded by Options.MaxLineBytes (default
// [DefaultMaxLineBytes], 1 MiB + 64 KiB: Mixpanel refuses records of 1 MB
// or more anyway, the slack leaves room for whitespace). A longer record is
// never buffered whole: its first bytes are kept for the reject report
// and the rest is skipped. In JSON lines it is a per-row error and reading
// goes on at the next line; in a JSON array it is a per-row error and
// reading goes on at the next element (a 100 MB array on a single line is
// fine, only each element is bounded); in CSV it is fatal, because once a
// record is cut short its quoting, and so where the next record starts,
// is unknowable.
//
// Gzip input is bounded by Options.MaxDecompressedBytes (default
// [DefaultMaxDecompressedBytes], 10 GiB) and, when set, by
// Options.MaxCompressionRatio. No ratio limit is applied by default:
// deflate's ceiling is about 1030:1, which a bomb of zeros reaches, but
// periodic content gets close to it too (a file of identical rows
// compresses about 300:1, blank lines or rows of empty CSV cells far
// more), so a ratio cannot reliably tell a bomb from a dull file. What a
// bomb costs here is CPU time, never memory, and the total limit bounds
// that; most bombs (zeros) are refused at once as binary content anyway.
//
// # CSV
//
// The first row is the header; cells are trimmed of surrounding spaces,
// must be unique, and a column with an empty name may only hold empty
// cells. The delimiter is detected from the header line (the most frequent
// of ',', ';', TAB and '|', ',' on a tie) unless Options.Comma is set.
// Quoting follows RFC 4180 strictly (encoding/csv with LazyQuotes off):
// a stray quote rejects its row; a quoted field still open at the end of
// the file is fatal, because it swallowed every row after it. Rows whose
// cells are all empty (blank lines, ",,,") carry no data; they are skipped
// and counted in [Stats].BlankRows.
//
// CSV has no types, so cells are typed by their text ([TypeCell]);
// quoting does not change a cell's type (many exporters quote every
// cell):
//   - empty cells are left out of the record;
//   - "true" and "false", in any case, become booleans;
//   - integers become [json.Number] when they are written canonically
//     (optional '-', no '+', no leading zeros except "0" itself, not "-0")
//     and have at most 15 digits; longer ones stay strings because they are
//     identifiers (card, phone, 64-bit ids) that JavaScript numbers would
//     round;
//   - decimals ("12.50", "-0.5") become [json.Number] under the same rules
//     (at least one digit on each side of the point, at most 15 digits, no
//     exponent);
//   - everything else stays a string, unchanged (no trimming): "007",
//     "+4420…", "1e5", " 42", "NaN", dates.
//
// Options.CSVShape, when set, maps each typed row to the shape the
// importer needs (see mixpanel.FromCSVRow).
//
// # Resuming
//
// [Reader.Checkpoint] returns a [Resume]: the offset in the content just
// past the last item returned (with its line break), the lines before it,
// the format, and a CSV file's header and delimiter. [OpenAt] continues
// there: given the file from that offset on (an S3 ranged GET), it yields
// exactly the items, line numbers, rejected rows and final error that
// reading on would have, without sniffing the middle of a file or looking
// for a header in it. Resuming costs nothing then, wherever the offset is.
// Inside gzip data an offset can only be reached by decompressing up to
// it, so for a gzipped file OpenAt takes the whole file and decompresses
// and drops the content before the offset, which is cheaper than decoding
// it (15 to 25 times, for the generated records of BenchmarkResume).
//
// Every decision a decoder makes depends only on the bytes from the start
// of the item it is reading, never on how far its buffers had read ahead,
// so the resumed read cannot differ; tests check this at every checkpoint
// of files full of edge cases, and FuzzOpen halfway through arbitrary
// input.
package recordio
