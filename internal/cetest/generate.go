package cetest

import (
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"math/bits"
	"math/rand/v2"
	"sort"
	"strconv"
	"time"
)

// Record is one record served by a download.
type Record struct {
	// JSON is the record, a JSON object on one line. A Generator may reuse
	// the backing array after yield returns; copy it to keep it.
	JSON json.RawMessage
	// Time is the event time of an activity (its properties.time), used to
	// select activities by from and to. The zero Time means "parse it from
	// JSON when needed". It is ignored for other objects.
	Time time.Time
}

// A Generator yields the records of an object lazily, so a download can be
// far larger than memory. Records must yield the same sequence on every
// call. Count is optional: when set, it returns how many records Records
// yields whose Time is in [from, to) (zero bounds are open), so that a job's
// recordsCount is known without generating the data twice.
type Generator struct {
	Records func(yield func(Record) bool)
	Count   func(from, to time.Time) int64
}

// recordsGenerator serves a fixed slice of records.
func recordsGenerator(recs []Record) Generator {
	return Generator{Records: func(yield func(Record) bool) {
		for _, r := range recs {
			if !yield(r) {
				return
			}
		}
	}}
}

// AverageActivityBytes is the approximate size of one record of
// [SampleActivities], newline included, for sizing benchmarks by hand.
// [SampleActivitiesBytes] measures the real average instead.
const AverageActivityBytes = 430

// SampleActivities returns n deterministic Mixpanel events spread evenly over
// [from, to) at one-second resolution, as the raw export API returns them:
//
//	{"event":"Page View","properties":{"time":1764028800,"distinct_id":"user-42",
//	 "$insert_id":"…","mp_processing_time_ms":…,"$browser":"Chrome",…,"plan":"pro"}}
//
// distinct_id is "user-<k>" with k below max(1, n/10), so SampleActivities(s,
// 5000, …) and SampleUsers(s, 500) describe the same people. The same seed
// gives the same records; every record passes the emulator's (and Mixpanel's)
// upload validation as long as to is not more than an hour in the future.
func SampleActivities(seed int64, n int, from, to time.Time) Generator {
	first, end := ceilUnix(from), ceilUnix(to)
	span := end - first
	if n <= 0 || span <= 0 {
		return Generator{Records: func(func(Record) bool) {}, Count: func(time.Time, time.Time) int64 { return 0 }}
	}
	at := func(i int) int64 { // seconds of event i; non-decreasing in i
		hi, lo := bits.Mul64(uint64(span), uint64(i))
		q, _ := bits.Div64(hi, lo, uint64(n))
		return first + int64(q)
	}
	pool := max(1, n/10)
	records := func(yield func(Record) bool) {
		rng := rand.New(rand.NewPCG(uint64(seed), 0x61637469)) // "acti"
		buf := make([]byte, 0, 1024)
		for i := range n {
			sec := at(i)
			buf = appendActivity(buf[:0], rng, sec, rng.IntN(pool), seed)
			if !yield(Record{JSON: buf, Time: time.Unix(sec, 0)}) {
				return
			}
		}
	}
	count := func(lo, hi time.Time) int64 {
		start, stop := 0, n
		if !lo.IsZero() {
			s := ceilUnix(lo)
			start = sort.Search(n, func(i int) bool { return at(i) >= s })
		}
		if !hi.IsZero() {
			s := ceilUnix(hi)
			stop = sort.Search(n, func(i int) bool { return at(i) >= s })
		}
		return int64(max(0, stop-start))
	}
	return Generator{Records: records, Count: count}
}

// SampleActivitiesBytes is SampleActivities with n chosen so that the JSON
// lines download of all records is about size bytes (within a few percent; a
// JSON array is the same size). It is meant for benchmarks.
func SampleActivitiesBytes(seed int64, size int64, from, to time.Time) Generator {
	n := max(1, size/AverageActivityBytes)
	// Measure the average of the first records of the generator of that size:
	// the distinct_id length depends on n, so measure with it.
	var total, seen int64
	SampleActivities(seed, int(n), from, to).Records(func(r Record) bool {
		total += int64(len(r.JSON)) + 1
		seen++
		return seen < 2000
	})
	if seen > 0 && total > 0 {
		n = max(1, size*seen/total)
	}
	return SampleActivities(seed, int(n), from, to)
}

// SampleUsers returns m deterministic Mixpanel people profiles as the Engage
// query returns them:
//
//	{"$distinct_id":"user-0","$properties":{"$email":"…","$name":"…","$city":"…",
//	 "$country_code":"…","$created":"2024-03-05T10:11:12","$last_seen":"…","plan":"free",…}}
//
// $created lies in 2023–2025 and does not depend on the wall clock.
func SampleUsers(seed int64, m int) Generator {
	m = max(0, m)
	records := func(yield func(Record) bool) {
		rng := rand.New(rand.NewPCG(uint64(seed), 0x75736572)) // "user"
		buf := make([]byte, 0, 1024)
		for k := range m {
			buf = appendUser(buf[:0], rng, k)
			if !yield(Record{JSON: buf}) {
				return
			}
		}
	}
	return Generator{Records: records, Count: func(time.Time, time.Time) int64 { return int64(m) }}
}

// ceilUnix is t in Unix seconds, rounded up.
func ceilUnix(t time.Time) int64 {
	s := t.Unix()
	if t.Nanosecond() > 0 {
		s++
	}
	return s
}

type city struct{ name, region, country, tz string }

var (
	eventNames = []string{
		"Page View", "Page View", "Page View", "Page View", "Search", "Search",
		"Add to Cart", "Login", "Sign Up", "Purchase", "Share", "Logout",
	}
	browsers = []string{"Chrome", "Chrome", "Chrome", "Safari", "Safari", "Firefox", "Edge", "Mobile Safari"}
	systems  = []string{"Windows", "Mac OS X", "Linux", "iOS", "Android"}
	cities   = []city{
		{"San Francisco", "California", "US", "America/Los_Angeles"},
		{"New York", "New York", "US", "America/New_York"},
		{"Dallas", "Texas", "US", "America/Chicago"},
		{"London", "England", "GB", "Europe/London"},
		{"Berlin", "Berlin", "DE", "Europe/Berlin"},
		{"Paris", "Île-de-France", "FR", "Europe/Paris"},
		{"São Paulo", "São Paulo", "BR", "America/Sao_Paulo"},
		{"Bengaluru", "Karnataka", "IN", "Asia/Kolkata"},
		{"Tokyo", "Tokyo", "JP", "Asia/Tokyo"},
		{"Sydney", "New South Wales", "AU", "Australia/Sydney"},
	}
	pages      = []string{"/", "/pricing", "/docs", "/blog", "/features", "/signup", "/account", "/cart"}
	searches   = []string{"export csv", "pricing", "api key", "dashboard", "invoice", "team plan"}
	plans      = []string{"free", "free", "free", "pro", "pro", "enterprise"}
	firstNames = []string{"Ada", "Grace", "Alan", "Katherine", "Linus", "Margaret", "Dennis", "Barbara", "Ken", "Frances", "Edsger", "Radia"}
	lastNames  = []string{"Lovelace", "Hopper", "Turing", "Johnson", "Torvalds", "Hamilton", "Ritchie", "Liskov", "Thompson", "Allen", "Dijkstra", "Perlman"}
)

func pick[T any](rng *rand.Rand, xs []T) T { return xs[rng.IntN(len(xs))] }

// appendActivity appends one event in a fixed key order.
func appendActivity(b []byte, rng *rand.Rand, sec int64, user int, seed int64) []byte {
	name := pick(rng, eventNames)
	c := cities[userHash(seed, user)%uint64(len(cities))]
	b = append(b, `{"event":`...)
	b = strconv.AppendQuote(b, name)
	b = append(b, `,"properties":{"time":`...)
	b = strconv.AppendInt(b, sec, 10)
	b = append(b, `,"distinct_id":"user-`...)
	b = strconv.AppendInt(b, int64(user), 10)
	b = append(b, `","$insert_id":"`...)
	b = appendUUID(b, rng.Uint64(), rng.Uint64())
	b = append(b, `","mp_processing_time_ms":`...)
	b = strconv.AppendInt(b, sec*1000+200+int64(rng.IntN(5000)), 10)
	b = append(b, `,"$browser":`...)
	b = strconv.AppendQuote(b, pick(rng, browsers))
	b = append(b, `,"$browser_version":`...)
	b = strconv.AppendInt(b, int64(100+rng.IntN(30)), 10)
	b = append(b, `,"$os":`...)
	b = strconv.AppendQuote(b, pick(rng, systems))
	b = append(b, `,"$device_id":"`...)
	h := userHash(seed, user)
	b = appendUUID(b, h, h*0x9e3779b97f4a7c15)
	b = append(b, `","$city":`...)
	b = strconv.AppendQuote(b, c.name)
	b = append(b, `,"$region":`...)
	b = strconv.AppendQuote(b, c.region)
	b = append(b, `,"mp_country_code":"`...)
	b = append(b, c.country...)
	b = append(b, `","$timezone":"`...)
	b = append(b, c.tz...)
	b = append(b, `","mp_lib":"web","plan":"`...)
	b = append(b, plans[h%uint64(len(plans))]...)
	b = append(b, '"')
	switch name {
	case "Page View":
		b = append(b, `,"$current_url":"https://app.example.com`...)
		b = append(b, pick(rng, pages)...)
		b = append(b, '"')
	case "Search":
		b = append(b, `,"query":`...)
		b = strconv.AppendQuote(b, pick(rng, searches))
	case "Purchase", "Add to Cart":
		b = append(b, `,"amount":`...)
		b = strconv.AppendFloat(b, float64(500+rng.IntN(20000))/100, 'f', 2, 64)
		b = append(b, `,"currency":"USD"`...)
	}
	return append(b, "}}"...)
}

// appendUser appends one profile in a fixed key order.
func appendUser(b []byte, rng *rand.Rand, k int) []byte {
	first, last := pick(rng, firstNames), pick(rng, lastNames)
	c := pick(rng, cities)
	base := time.Date(2023, 1, 1, 0, 0, 0, 0, time.UTC)
	created := base.Add(time.Duration(rng.Int64N(int64(3*365*24*time.Hour))) / time.Second * time.Second)
	seen := created.Add(time.Duration(rng.Int64N(int64(400*24*time.Hour))) / time.Second * time.Second)
	b = append(b, `{"$distinct_id":"user-`...)
	b = strconv.AppendInt(b, int64(k), 10)
	b = append(b, `","$properties":{"$email":"`...)
	b = append(b, lower(first)...)
	b = append(b, '.')
	b = append(b, lower(last)...)
	b = strconv.AppendInt(b, int64(k), 10)
	b = append(b, `@example.com","$name":`...)
	b = strconv.AppendQuote(b, first+" "+last)
	b = append(b, `,"$first_name":`...)
	b = strconv.AppendQuote(b, first)
	b = append(b, `,"$last_name":`...)
	b = strconv.AppendQuote(b, last)
	b = append(b, `,"$city":`...)
	b = strconv.AppendQuote(b, c.name)
	b = append(b, `,"$region":`...)
	b = strconv.AppendQuote(b, c.region)
	b = append(b, `,"$country_code":"`...)
	b = append(b, c.country...)
	b = append(b, `","$timezone":"`...)
	b = append(b, c.tz...)
	b = append(b, `","$created":"`...)
	b = created.AppendFormat(b, "2006-01-02T15:04:05")
	b = append(b, `","$last_seen":"`...)
	b = seen.AppendFormat(b, "2006-01-02T15:04:05")
	b = append(b, `","plan":"`...)
	b = append(b, pick(rng, plans)...)
	b = append(b, `","credits":`...)
	b = strconv.AppendInt(b, int64(rng.IntN(500)), 10)
	return append(b, "}}"...)
}

// userHash is a stable per-user hash (splitmix64), so a user keeps the same
// city, device and plan in every event.
func userHash(seed int64, user int) uint64 {
	z := uint64(seed)*0x9e3779b97f4a7c15 + uint64(user) + 0x632be59bd9b4e019
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9
	z = (z ^ (z >> 27)) * 0x94d049bb133111eb
	return z ^ (z >> 31)
}

// appendUUID appends a version-4-shaped UUID (36 characters of [0-9a-f-]).
func appendUUID(b []byte, hi, lo uint64) []byte {
	const hex = "0123456789abcdef"
	hi = hi&^0xf000 | 0x4000
	lo = lo&^(0xc<<60) | 0x8<<60
	var raw [16]byte
	for i := range 8 {
		raw[i] = byte(hi >> (56 - 8*i))
		raw[8+i] = byte(lo >> (56 - 8*i))
	}
	for i, x := range raw {
		if i == 4 || i == 6 || i == 8 || i == 10 {
			b = append(b, '-')
		}
		b = append(b, hex[x>>4], hex[x&0xf])
	}
	return b
}

func lower(s string) string {
	b := []byte(s)
	for i, c := range b {
		if 'A' <= c && c <= 'Z' {
			b[i] = c + 'a' - 'A'
		}
	}
	return string(b)
}

// BulkyActivities returns about size bytes (as JSON lines) of deterministic
// events of one day, [day, day+24h), each carrying 600 random bytes
// (base64) in properties.blob: they compress about 1.4x where
// SampleActivities compress 5x, so that a download of a few MiB fills
// several 5 MiB multipart parts. Their times repeat every 24h of seconds.
// Count is cheap (no random bytes are drawn for it).
func BulkyActivities(seed int64, size int64, day time.Time) Generator {
	const blobLen = 600
	zero := make([]byte, base64.StdEncoding.EncodedLen(blobLen))
	format := func(buf []byte, i int, blob []byte) ([]byte, time.Time) {
		at := day.Add(time.Duration(i%86400) * time.Second)
		return fmt.Appendf(buf[:0], `{"event":"Bulky","properties":{"time":%d,"distinct_id":"u-%d","$insert_id":"i-%d","blob":"%s"}}`,
			at.Unix(), i%977, i, blob), at
	}
	// The records' lengths do not depend on the random bytes.
	n := 0
	var buf []byte
	for total := int64(0); total < size; n++ {
		buf, _ = format(buf, n, zero)
		total += int64(len(buf)) + 1
	}
	records := func(yield func(Record) bool) {
		rng := rand.New(rand.NewPCG(uint64(seed), 0x62756c6b)) // "bulk"
		blob := make([]byte, blobLen)
		enc := make([]byte, len(zero))
		var buf []byte
		for i := range n {
			for k := 0; k < blobLen; k += 8 {
				binary.LittleEndian.PutUint64(blob[k:], rng.Uint64())
			}
			base64.StdEncoding.Encode(enc, blob)
			var at time.Time
			buf, at = format(buf, i, enc)
			if !yield(Record{JSON: buf, Time: at}) {
				return
			}
		}
	}
	count := func(from, to time.Time) int64 {
		var c int64
		for i := range n {
			at := day.Add(time.Duration(i%86400) * time.Second)
			if (from.IsZero() || !at.Before(from)) && (to.IsZero() || at.Before(to)) {
				c++
			}
		}
		return c
	}
	return Generator{Records: records, Count: count}
}
