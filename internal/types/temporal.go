package types

import (
	"bytes"
	"time"
)

const (
	maxTimestamp = `"9999-12-31T23:59:59.999999+00:00"`
	maxDate      = `"9999-12-31T00:00:00+00:00"`
	minTimestamp = `"0001-01-01T00:00:00+00:00"`
)

// appendTimestamp turns ISO DateStyle output of date, timestamp and
// timestamptz into `YYYY-MM-DDTHH:MM:SS[.ffffff]+00:00` in UTC. The session
// runs with TimeZone=UTC, so the offset is normally +00; any other offset is
// converted rather than trusted.
func appendTimestamp(dst, text []byte, dateOnly bool) ([]byte, Issue) {
	max := maxTimestamp
	if dateOnly {
		max = maxDate
	}
	switch string(text) {
	case "infinity":
		return append(dst, max...), IssueClamped
	case "-infinity":
		return append(dst, minTimestamp...), IssueClamped
	}
	if bytes.HasSuffix(text, []byte(" BC")) {
		return append(dst, minTimestamp...), IssueClamped
	}
	p := parser{s: text}
	year, yearDigits := p.digits()
	if yearDigits < 4 || !p.expect('-') {
		return appendEscaped(dst, text, IssueMalformed)
	}
	if yearDigits > 4 {
		return append(dst, max...), IssueClamped
	}
	month, n1 := p.digits()
	ok := n1 == 2 && p.expect('-')
	day, n2 := p.digits()
	if !ok || n2 != 2 {
		return appendEscaped(dst, text, IssueMalformed)
	}
	if dateOnly {
		if !p.done() {
			return appendEscaped(dst, text, IssueMalformed)
		}
		dst = append(dst, '"')
		dst = append(dst, text[:10]...)
		return append(dst, "T00:00:00+00:00\""...), 0
	}
	if !p.expect(' ') {
		return appendEscaped(dst, text, IssueMalformed)
	}
	clockStart := p.i
	hour, minute, sec, ok := p.clock()
	if !ok {
		return appendEscaped(dst, text, IssueMalformed)
	}
	clock := text[clockStart:p.i]
	frac := p.fraction()
	offset, ok := p.offset()
	if !ok || !p.done() {
		return appendEscaped(dst, text, IssueMalformed)
	}
	if offset == 0 {
		dst = append(dst, '"')
		dst = append(dst, text[:10]...)
		dst = append(dst, 'T')
		dst = append(dst, clock...)
		dst = appendFraction(dst, frac)
		return append(dst, "+00:00\""...), 0
	}
	nanos := 0
	for i := range 9 {
		nanos *= 10
		if i < len(frac) {
			nanos += int(frac[i] - '0')
		}
	}
	utc := time.Date(year, time.Month(month), day, hour, minute, sec, nanos, time.UTC).Add(-time.Duration(offset) * time.Second)
	switch {
	case utc.Year() > 9999:
		return append(dst, max...), IssueClamped
	case utc.Year() < 1:
		return append(dst, minTimestamp...), IssueClamped
	}
	dst = append(dst, '"')
	dst = utc.AppendFormat(dst, "2006-01-02T15:04:05")
	if us := utc.Nanosecond() / 1000; us != 0 {
		dst = append(dst, '.')
		dst = appendPadded(dst, us, 6)
	}
	return append(dst, "+00:00\""...), 0
}

// appendTime formats time and timetz as `HH:MM:SS[.ffffff][±HH:MM]`, the form
// the reference's Python isoformat produced.
func appendTime(dst, text []byte) ([]byte, Issue) {
	p := parser{s: text}
	if _, _, _, ok := p.clock(); !ok {
		return appendEscaped(dst, text, IssueMalformed)
	}
	clock := text[:p.i]
	frac := p.fraction()
	offStart := p.i
	if _, ok := p.offset(); !ok || !p.done() {
		return appendEscaped(dst, text, IssueMalformed)
	}
	offset := text[offStart:]
	dst = append(dst, '"')
	dst = append(dst, clock...)
	dst = appendFraction(dst, frac)
	if len(offset) > 0 {
		dst = append(dst, offset...)
		if len(offset) == 3 {
			dst = append(dst, ":00"...)
		}
	}
	return append(dst, '"'), 0
}

// appendFraction writes a non-zero fraction padded to microseconds.
func appendFraction(dst, frac []byte) []byte {
	if len(bytes.Trim(frac, "0")) == 0 {
		return dst
	}
	dst = append(dst, '.')
	dst = append(dst, frac...)
	for range 6 - len(frac) {
		dst = append(dst, '0')
	}
	return dst
}

func appendPadded(dst []byte, v, width int) []byte {
	var buf [20]byte
	i := len(buf)
	for ; v > 0 || i > len(buf)-width; v /= 10 {
		i--
		buf[i] = byte('0' + v%10)
	}
	return append(dst, buf[i:]...)
}

// parser walks fixed-format temporal text.
type parser struct {
	s []byte
	i int
}

func (p *parser) done() bool { return p.i == len(p.s) }

func (p *parser) expect(c byte) bool {
	if p.i < len(p.s) && p.s[p.i] == c {
		p.i++
		return true
	}
	return false
}

// digits reads a run of decimal digits (at most 9 are accumulated).
func (p *parser) digits() (value, count int) {
	for p.i < len(p.s) && p.s[p.i] >= '0' && p.s[p.i] <= '9' {
		if count < 9 {
			value = value*10 + int(p.s[p.i]-'0')
		}
		count++
		p.i++
	}
	return value, count
}

// clock reads HH:MM:SS.
func (p *parser) clock() (hour, minute, sec int, ok bool) {
	hour, n1 := p.digits()
	ok1 := p.expect(':')
	minute, n2 := p.digits()
	ok2 := p.expect(':')
	sec, n3 := p.digits()
	return hour, minute, sec, n1 == 2 && ok1 && n2 == 2 && ok2 && n3 == 2
}

// fraction reads an optional `.digits` (up to 6 digits).
func (p *parser) fraction() []byte {
	if !p.expect('.') {
		return nil
	}
	start := p.i
	if _, n := p.digits(); n == 0 || n > 6 {
		p.i = start - 1 // let the caller see an unparsed '.'
		return nil
	}
	return p.s[start:p.i]
}

// offset reads an optional ±HH[:MM[:SS]] UTC offset, in seconds east of UTC.
func (p *parser) offset() (int, bool) {
	if p.i == len(p.s) {
		return 0, true
	}
	sign := 1
	switch p.s[p.i] {
	case '+':
	case '-':
		sign = -1
	default:
		return 0, false
	}
	p.i++
	seconds, unit := 0, 3600
	for part := range 3 {
		if part > 0 && !p.expect(':') {
			break
		}
		v, n := p.digits()
		if n != 2 {
			return 0, false
		}
		seconds += v * unit
		unit /= 60
	}
	return sign * seconds, true
}
