// Package mixpanel holds Mixpanel's record rules: it validates and
// normalises events ("activities") and profile updates ("users") before
// they are sent through a CE bulk upload, so that every row is either sent
// in a form Mixpanel accepts or rejected here with a reason a person can
// act on.
//
// The rules follow Mixpanel's own documentation of /import and /engage
// (summarised in the project's reference, cloud-elements-bulk-api.md
// §5.4–5.5; https://docs.mixpanel.com/reference/import-events and
// https://docs.mixpanel.com/reference/user-profile-limits). Where the
// docs leave a choice, the decision is written down here.
//
// # Events (activities)
//
// An event is {"event": ..., "properties": {...}}; any other top-level key
// is rejected.
//   - event: a non-empty string (not only blank space) of at most 255
//     characters; a number is taken as its text.
//   - properties: an object, with fewer than 255 properties (counting
//     time, distinct_id and $insert_id, derived or not).
//   - properties.time, required: a number of seconds, milliseconds,
//     microseconds or nanoseconds since the epoch, told apart by size
//     (below 1e11 seconds, below 1e14 milliseconds, below 1e17
//     microseconds, else nanoseconds: each unit starts where the smaller
//     one would be past the year 5000; the price is that milliseconds
//     before 1973-03-03 read as seconds far in the future and are
//     rejected), as a JSON number or a numeric string; or an ISO-8601 / RFC 3339 date-time with a timezone ("Z",
//     "+02:00", "+0200", "+02" or " UTC"; 'T' or a space between date and
//     time; any fraction of a second). A date-time without a timezone, or
//     a bare date, is rejected rather than guessed: reading it as UTC
//     would silently shift every event of a file written in local time.
//     The time is sent as whole seconds (fractions dropped, rounding
//     down), because the element may forward events to an API that takes
//     seconds only. It must not be before 1971-01-01T00:00:00Z nor more
//     than 1 hour after now.
//   - properties.distinct_id, required: a string, or a number taken as its
//     text. "" is allowed (Mixpanel's advice for events that belong to no
//     user); Mixpanel's placeholder values ("null", "anonymous", "0",
//     "-1", the zero UUID, ...; the list is in blockedIDs with its source)
//     are rejected, ignoring case and surrounding blank space. Longer than
//     255 characters is rejected too: Mixpanel would cut it and merge
//     users that differ after the cut.
//   - properties.$insert_id: when given (not null and not ""), at most 36
//     bytes of [A-Za-z0-9-] and not a placeholder value. When missing it
//     is derived from the content (see [InsertID]) so that importing the
//     same file again creates no duplicates.
//   - nested values: objects and arrays may nest 3 levels deep inside a
//     property (a property whose value is an object is level 1), objects
//     need fewer than 255 keys and arrays fewer than 255 elements.
//   - the normalised record must be under 1,000,000 bytes.
//   - strings (other than the event name and distinct_id) longer than 255
//     characters are kept: Mixpanel cuts them itself, and cutting them
//     here too would gain nothing.
//
// # Profile updates (users)
//
// A profile update is {"$distinct_id": ..., <operations>, <options>}:
//   - $distinct_id, required: a non-empty string, or a number taken as its
//     text; the same placeholder and length rules as distinct_id.
//   - at least one operation: $set, $set_once, $append and $remove take a
//     non-empty object; $add a non-empty object of numbers; $union a
//     non-empty object of arrays; $unset a non-empty array of property
//     names; $delete any value, sent as "". $delete cannot be combined
//     with another operation. Several other operations in one update are
//     allowed, as the /engage schema describes them as fields of one
//     object.
//   - options: $token (a non-empty string), $ip (a string or number), $time
//     (a non-negative number, milliseconds), $ignore_time and
//     $ignore_alias (booleans), $latitude (-90..90) and $longitude
//     (-180..180).
//   - any other top-level key is rejected: profile properties go under
//     $set.
//   - the normalised update must be under 1,000,000 bytes.
//
// # Values and output
//
// Every string and key must be valid UTF-8 and every number a finite JSON
// number. The output is compact JSON with object keys sorted at every
// level and no HTML escaping, byte for byte what encoding/json would
// produce with SetEscapeHTML(false), so the same record always gives the
// same line. json.Number values are written as they are, so numbers keep
// the exact text they had in the file.
//
// # CSV
//
// [FromCSVRow] maps a flat CSV row to these shapes; see its documentation.
package mixpanel
