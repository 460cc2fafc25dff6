package recordio

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"path"
	"slices"
	"strings"
)

// Format is a record file format.
type Format string

// The formats a [Reader] reads.
const (
	FormatCSV       Format = "csv"        // CSV with a header row
	FormatJSONLines Format = "jsonl"      // one JSON object per line
	FormatJSONArray Format = "json-array" // one JSON array of objects
)

// Defaults for [Options].
const (
	// DefaultMaxLineBytes bounds one record's text: Mixpanel refuses
	// records of 1 MB or more, plus slack for whitespace and line breaks.
	DefaultMaxLineBytes = 1<<20 + 64<<10
	// DefaultMaxDecompressedBytes bounds the content of a gzipped file.
	DefaultMaxDecompressedBytes int64 = 10 << 30
)

// MaxRawBytes is the most bytes of a record's original text kept in
// [Item].Raw.
const MaxRawBytes = 64 << 10

const (
	readBufferSize = 64 << 10 // buffer between the source and the decoders
	sniffSize      = 8 << 10  // what the binary/UTF-8 check looks at
	ratioGrace     = 1 << 20  // decompressed bytes before the ratio check starts
)

// Options tune [Open]. The zero value is ready to use.
type Options struct {
	// Format forces a format; empty means detect it from the name and
	// content (see the package documentation).
	Format Format
	// MaxLineBytes bounds the text of one record, counting its line
	// break: a JSON line, a CSV record (which may span several lines
	// when a quoted field holds line breaks) or a JSON array element.
	// Zero or less means DefaultMaxLineBytes.
	MaxLineBytes int
	// MaxDecompressedBytes bounds the decompressed content of a gzipped
	// file. Zero or less means DefaultMaxDecompressedBytes.
	MaxDecompressedBytes int64
	// MaxCompressionRatio, when positive, refuses gzip content that
	// decompresses to more than this many times the compressed bytes read
	// so far, once at least 1 MiB has been decompressed. Zero or less
	// means no ratio limit (see the package documentation for why that is
	// the default).
	MaxCompressionRatio int
	// Comma is the CSV delimiter; zero means detect it from the header.
	Comma rune
	// CSVShape, when set, is applied to every CSV row after typing; its
	// result becomes Item.Record. It is not applied to JSON records.
	CSVShape func(row map[string]any) map[string]any
}

func (o Options) withDefaults() Options {
	if o.MaxLineBytes <= 0 {
		o.MaxLineBytes = DefaultMaxLineBytes
	}
	if o.MaxDecompressedBytes <= 0 {
		o.MaxDecompressedBytes = DefaultMaxDecompressedBytes
	}
	return o
}

// Item is one record of a file, or one row that could not be decoded.
type Item struct {
	// Line is the 1-based line the record starts on: a JSON line's
	// number, the first line of a CSV record, or the line where a JSON
	// array element starts.
	Line int
	// Raw is the record's original text, at most MaxRawBytes of it, for
	// reject reports. It is only valid until the next call to Next; copy
	// it to keep it.
	Raw []byte
	// Record is the decoded record, with numbers as json.Number. It is nil
	// when Err is set.
	Record map[string]any
	// Err, when set, is a *RowError: this row is rejected and reading
	// continues.
	Err error
}

// RowError is a problem with one row; the row is rejected and the rest of
// the file is still read.
type RowError struct {
	Line   int    // 1-based line the row starts on
	Reason string // what is wrong, for people
}

func (e *RowError) Error() string { return fmt.Sprintf("line %d: %s", e.Line, e.Reason) }

// FileError means the file cannot be read any further: it is not a record
// file, or it is corrupt or cut short at Line.
type FileError struct {
	Line   int    // 1-based line where reading stopped; 0 when not about a line
	Reason string // what is wrong, for people
}

func (e *FileError) Error() string {
	if e.Line <= 0 {
		return e.Reason
	}
	return fmt.Sprintf("line %d: %s", e.Line, e.Reason)
}

// Stats describes how much of a file a [Reader] has read.
type Stats struct {
	Format Format
	Gzip   bool
	// BytesRead counts the bytes read from the source (the compressed
	// size of a gzipped file); it may run a buffer ahead of the records.
	BytesRead int64
	// BytesDecompressed counts the content bytes after decompression; it
	// equals BytesRead for a plain file.
	BytesDecompressed int64
	// Records counts the items returned without Err, RowErrors those with.
	Records, RowErrors int64
	// BlankRows counts CSV rows skipped because every cell was empty.
	BlankRows int64
}

// decoder is what each format implements.
type decoder interface {
	next() (Item, error)
	// position returns the content bytes the decoder has consumed (up to
	// the end of the last item it returned) and the line breaks among
	// them, counted from where it started. start means the decoder has
	// not passed a point it can resume from yet (a JSON array before its
	// first element): it can only be read again from the file's start.
	position() (off int64, lines int, start bool)
}

// Reader reads the records of one file. It is not safe for concurrent use.
type Reader struct {
	name   string
	format Format
	src    *countingReader
	gz     *gunzipReader // nil for a plain file
	dec    decoder
	base   int64 // content offset where the decoder started
	stats  Stats
	err    error // sticky io.EOF or fatal error
}

// Resume is where a [Reader] stopped, from [Reader.Checkpoint]: enough for
// [OpenAt] to continue reading there, with the same line numbers, format,
// CSV header and delimiter, and without looking at the start of the file
// again. It encodes to JSON, for checkpoints.
type Resume struct {
	// Format is the file's format, as detected when it was first opened.
	Format Format `json:"format"`
	// Gzip: the file is gzipped, so Offset is a position in the
	// decompressed content, which only reading from the file's first
	// byte can reach.
	Gzip bool `json:"gzip,omitempty"`
	// Offset is the position in the (decompressed) content where the next
	// item's text starts: just past the last item returned, including
	// its line break (a JSON array: just past its last element). It
	// counts a byte-order mark. For a plain file it is a byte offset in
	// the file, usable in an HTTP range. Zero means the start of the
	// file: nothing to skip.
	Offset int64 `json:"offset"`
	// Line is the number of line breaks before Offset: the next item is
	// on line Line+1 or later.
	Line int `json:"line"`
	// Header and Comma are a CSV file's header row (trimmed) and
	// delimiter.
	Header []string `json:"header,omitempty"`
	Comma  rune     `json:"comma,omitempty"`
}

// Open prepares to read the records of the file called name (an S3 key or
// a path; only its base name matters) from r. It reads the first few KiB
// to detect compression and format, and returns a *FileError when the
// content is not a record file (binary, UTF-16, empty, corrupt gzip);
// other errors come from r.
func Open(r io.Reader, name string, opts Options) (*Reader, error) {
	opts = opts.withDefaults()
	rd := &Reader{name: path.Base(name), src: &countingReader{r: r}}
	br := bufio.NewReaderSize(rd.src, readBufferSize)

	magic, err := br.Peek(2)
	if err != nil && err != io.EOF {
		return nil, rd.wrap(err)
	}
	content := br
	if len(magic) == 2 && magic[0] == 0x1f && magic[1] == 0x8b {
		gz, err := newGunzipReader(br, rd.src, opts)
		if err != nil {
			return nil, rd.wrap(err)
		}
		rd.gz = gz
		content = bufio.NewReaderSize(gz, readBufferSize)
	}

	sn, err := sniff(content)
	if err != nil {
		return nil, rd.wrap(err)
	}
	rd.base = sn.skipped
	format := opts.Format
	if format == "" {
		format, err = detectFormat(rd.name, sn)
		if err != nil {
			return nil, rd.wrap(err)
		}
	}
	rd.format = format
	switch format {
	case FormatCSV:
		comma := opts.Comma
		if comma == 0 {
			comma = sn.comma()
		}
		rd.dec, err = newCSVDecoder(content, comma, opts)
	case FormatJSONLines:
		rd.dec = newJSONLinesDecoder(content, opts)
	case FormatJSONArray:
		rd.dec, err = newJSONArrayDecoder(content, opts)
	default:
		return nil, fmt.Errorf("open %s: unknown format %q", rd.name, format)
	}
	if err != nil {
		return nil, rd.wrap(err)
	}
	return rd, nil
}

// OpenAt is Open for a file that was read before up to res (from
// [Reader.Checkpoint]): the Reader it returns yields the items that
// followed res, exactly as a Reader that had read the file from its start
// would, with the same line numbers, and without sniffing the content or
// reading a CSV header. The format, CSV header and delimiter come from res;
// opts.Format and opts.Comma are ignored.
//
// For a plain file, r must deliver the file from byte res.Offset on (an
// HTTP range request). For a gzipped file (res.Gzip), r must deliver the
// whole file: OpenAt decompresses it and skips res.Offset bytes of content,
// which costs decompression only, no decoding. A zero res.Offset means the
// start of the file: r delivers it whole and OpenAt is Open with the
// format of res.
//
// Stats of the returned Reader count from res: BytesRead counts what r
// delivers, the record counts and BlankRows what is read after res.
func OpenAt(r io.Reader, name string, opts Options, res Resume) (*Reader, error) {
	if res.Offset == 0 {
		opts.Format, opts.Comma = res.Format, res.Comma
		return Open(r, name, opts)
	}
	opts = opts.withDefaults()
	rd := &Reader{name: path.Base(name), format: res.Format, src: &countingReader{r: r}, base: res.Offset}
	switch {
	case res.Offset < 0:
		return nil, fmt.Errorf("resume %s: negative offset %d", rd.name, res.Offset)
	case res.Format == FormatCSV && (len(res.Header) == 0 || res.Comma == 0):
		return nil, fmt.Errorf("resume %s: a CSV resume needs the header and the delimiter", rd.name)
	}
	content := bufio.NewReaderSize(rd.src, readBufferSize)
	if res.Gzip {
		magic, err := content.Peek(2)
		if err != nil && err != io.EOF {
			return nil, rd.wrap(err)
		}
		if len(magic) < 2 || magic[0] != 0x1f || magic[1] != 0x8b {
			return nil, fmt.Errorf("resume %s: the file is no longer gzip data", rd.name)
		}
		gz, err := newGunzipReader(content, rd.src, opts)
		if err != nil {
			return nil, rd.wrap(err)
		}
		rd.gz = gz
		content = bufio.NewReaderSize(gz, readBufferSize)
		if err := discard(content, res.Offset); err == io.EOF {
			return nil, fmt.Errorf("resume %s: the content ends at byte %d, before the resume offset %d", rd.name, gz.n, res.Offset)
		} else if err != nil {
			return nil, rd.wrap(err)
		}
	}
	switch res.Format {
	case FormatCSV:
		rd.dec = resumeCSVDecoder(content, res, opts)
	case FormatJSONLines:
		rd.dec = &jsonLinesDecoder{br: content, maxLine: opts.MaxLineBytes, line: res.Line}
	case FormatJSONArray:
		rd.dec = &jsonArrayDecoder{br: content, maxLine: opts.MaxLineBytes, line: res.Line + 1, state: arrayAfter}
	default:
		return nil, fmt.Errorf("resume %s: unknown format %q", rd.name, res.Format)
	}
	return rd, nil
}

// discard skips n bytes of br; io.EOF means there were fewer.
func discard(br *bufio.Reader, n int64) error {
	for n > 0 {
		k, err := br.Discard(int(min(n, 1<<30)))
		n -= int64(k)
		if err != nil {
			if err == io.EOF && n == 0 {
				return nil
			}
			return err
		}
	}
	return nil
}

// detectFormat picks the format from the name, then from the content.
func detectFormat(name string, sn sniffed) (Format, error) {
	lower := strings.ToLower(name)
	lower = strings.TrimSuffix(lower, ".gz")
	switch path.Ext(lower) {
	case ".csv":
		return FormatCSV, nil
	case ".json", ".jsonl", ".ndjson":
		switch sn.first {
		case '[':
			return FormatJSONArray, nil
		case '{':
			return FormatJSONLines, nil
		}
		return "", &FileError{Line: sn.firstLine, Reason: fmt.Sprintf(
			"a JSON file must start with '[' (an array) or '{' (one object per line), found %s", quoteByte(sn.first))}
	}
	switch sn.first {
	case '[':
		return FormatJSONArray, nil
	case '{':
		return FormatJSONLines, nil
	}
	return FormatCSV, nil
}

// Next returns the next record, io.EOF after the last one, a *FileError
// when the file cannot be read further, or another error when the
// underlying reader fails. Per-row problems are reported in Item.Err with
// a nil error.
func (r *Reader) Next() (Item, error) {
	if r.err != nil {
		return Item{}, r.err
	}
	it, err := r.dec.next()
	if err != nil {
		r.err = r.wrap(err)
		return Item{}, r.err
	}
	if it.Err != nil {
		r.stats.RowErrors++
	} else {
		r.stats.Records++
	}
	return it, nil
}

// wrap turns decoder errors into what Next and Open return: io.EOF and
// *FileError as they are, content problems as *FileError, the rest
// (source failures) wrapped with the file name.
func (r *Reader) wrap(err error) error {
	var fe *FileError
	var ce *contentError
	switch {
	case err == io.EOF, errors.As(err, &fe):
		return err
	case errors.As(err, &ce):
		return &FileError{Reason: ce.reason}
	}
	return fmt.Errorf("read %s: %w", r.name, err)
}

// Checkpoint returns where the reader stands: just past the last item Next
// returned (right after Open: before the first item), for [OpenAt]. ok is
// false once Next has returned an error or io.EOF.
func (r *Reader) Checkpoint() (res Resume, ok bool) {
	if r.err != nil {
		return Resume{}, false
	}
	off, lines, start := r.dec.position()
	res = Resume{Format: r.format, Gzip: r.gz != nil}
	if !start {
		res.Offset, res.Line = r.base+off, lines
	}
	if c, isCSV := r.dec.(*csvDecoder); isCSV {
		res.Header, res.Comma = slices.Clone(c.header), c.cr.Comma
	}
	return res, true
}

// Format returns the file's format.
func (r *Reader) Format() Format { return r.format }

// Stats returns what has been read so far.
func (r *Reader) Stats() Stats {
	s := r.stats
	s.Format = r.format
	s.BytesRead = r.src.n
	s.BytesDecompressed = r.src.n
	if r.gz != nil {
		s.Gzip = true
		s.BytesDecompressed = r.gz.n
	}
	if c, ok := r.dec.(*csvDecoder); ok {
		s.BlankRows = c.blankRows
	}
	return s
}

// rowErr builds an Item for a rejected row.
func rowErr(line int, raw []byte, format string, args ...any) Item {
	return Item{Line: line, Raw: capRaw(raw), Err: &RowError{Line: line, Reason: fmt.Sprintf(format, args...)}}
}

func capRaw(b []byte) []byte {
	if len(b) > MaxRawBytes {
		return b[:MaxRawBytes]
	}
	return b
}

// fileErr turns a read error met at line into a decoder error: content
// problems become a *FileError at that line; source errors pass through.
func fileErr(line int, err error) error {
	var ce *contentError
	if errors.As(err, &ce) {
		return &FileError{Line: line, Reason: ce.reason}
	}
	return err
}

func quoteByte(c byte) string {
	if c >= 0x20 && c < 0x7f {
		return fmt.Sprintf("%q", rune(c))
	}
	return fmt.Sprintf("byte 0x%02x", c)
}
