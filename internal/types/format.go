package types

import (
	"math"
	"strconv"
	"unicode/utf8"
)

// Issue flags what formatting a value had to repair, so that the caller can
// log one WARNING per column instead of failing the run.
type Issue uint8

const (
	// IssueClamped: a date or timestamp outside 0001..9999 (or ±infinity)
	// was clamped to the nearest representable value.
	IssueClamped Issue = 1 << iota
	// IssueInvalidUTF8: invalid UTF-8 (SQL_ASCII databases) was replaced.
	IssueInvalidUTF8
	// IssueMalformed: the text was not in the type's expected output form
	// and was emitted as a JSON string instead.
	IssueMalformed
)

// AppendJSON appends the JSON form of a non-NULL value given in PostgreSQL's
// text output (under the session settings the tap always sets).
func (t *Type) AppendJSON(dst, text []byte) ([]byte, Issue) {
	switch t.Kind {
	case KindInteger, KindNumeric:
		if isNonFinite(text) {
			return append(dst, "null"...), 0
		}
		if !IsJSONNumber(text) {
			return appendEscaped(dst, text, IssueMalformed)
		}
		return append(dst, text...), 0
	case KindFloat:
		return appendFloatText(dst, text, t.Float32)
	case KindBoolean:
		switch {
		case len(text) > 0 && text[0] == 't':
			return append(dst, "true"...), 0
		case len(text) > 0 && text[0] == 'f':
			return append(dst, "false"...), 0
		}
		return appendEscaped(dst, text, IssueMalformed)
	case KindBit1:
		switch string(text) {
		case "1":
			return append(dst, "true"...), 0
		case "0":
			return append(dst, "false"...), 0
		}
		return appendEscaped(dst, text, IssueMalformed)
	case KindJSON:
		if t.JSONAsObject {
			return appendCompactJSON(dst, text)
		}
		return appendEscaped(dst, text, 0)
	case KindHstore:
		return appendHstore(dst, text)
	case KindDate:
		return appendTimestamp(dst, text, true)
	case KindTimestamp:
		return appendTimestamp(dst, text, false)
	case KindTime, KindTimeTZ:
		return appendTime(dst, text)
	case KindArray:
		return t.appendArray(dst, text)
	}
	return appendEscaped(dst, text, 0)
}

// IsJSONNumber checks that text is a JSON number, so that no value ever
// breaks the output: numbers are copied as they are, never through a float.
func IsJSONNumber(s []byte) bool {
	i := 0
	if i < len(s) && s[i] == '-' {
		i++
	}
	switch {
	case i >= len(s):
		return false
	case s[i] == '0':
		i++
	case s[i] >= '1' && s[i] <= '9':
		for i < len(s) && s[i] >= '0' && s[i] <= '9' {
			i++
		}
	default:
		return false
	}
	if i < len(s) && s[i] == '.' {
		i++
		start := i
		for i < len(s) && s[i] >= '0' && s[i] <= '9' {
			i++
		}
		if i == start {
			return false
		}
	}
	if i < len(s) && (s[i] == 'e' || s[i] == 'E') {
		i++
		if i < len(s) && (s[i] == '+' || s[i] == '-') {
			i++
		}
		start := i
		for i < len(s) && s[i] >= '0' && s[i] <= '9' {
			i++
		}
		if i == start {
			return false
		}
	}
	return i == len(s)
}

func isNonFinite(text []byte) bool {
	switch string(text) {
	case "NaN", "Infinity", "-Infinity":
		return true
	}
	return false
}

// appendFloatText re-formats PostgreSQL's shortest round-trip float text the
// way encoding/json formats a float64 (or float32), so that output does not
// depend on PostgreSQL's exponent style.
func appendFloatText(dst, text []byte, float32Bits bool) ([]byte, Issue) {
	bits := 64
	if float32Bits {
		bits = 32
	}
	f, err := strconv.ParseFloat(string(text), bits)
	if err != nil {
		if isNonFinite(text) {
			return append(dst, "null"...), 0
		}
		return appendEscaped(dst, text, IssueMalformed)
	}
	if math.IsInf(f, 0) || math.IsNaN(f) {
		return append(dst, "null"...), 0
	}
	return AppendFloat(dst, f, bits), 0
}

// AppendFloat formats f exactly as encoding/json does.
func AppendFloat(dst []byte, f float64, bits int) []byte {
	abs := math.Abs(f)
	format := byte('f')
	if abs != 0 {
		if bits == 64 && (abs < 1e-6 || abs >= 1e21) ||
			bits == 32 && (float32(abs) < 1e-6 || float32(abs) >= 1e21) {
			format = 'e'
		}
	}
	dst = strconv.AppendFloat(dst, f, format, -1, bits)
	if format == 'e' {
		// clean up e-09 to e-9, as encoding/json does
		n := len(dst)
		if n >= 4 && dst[n-4] == 'e' && dst[n-3] == '-' && dst[n-2] == '0' {
			dst[n-2] = dst[n-1]
			dst = dst[:n-1]
		}
	}
	return dst
}

const hexDigits = "0123456789abcdef"

// AppendString appends s as a JSON string, escaped exactly as encoding/json
// with SetEscapeHTML(false) does.
func AppendString(dst []byte, s string) []byte {
	dst, _ = appendEscaped(dst, []byte(s), 0)
	return dst
}

// appendEscaped appends src as a JSON string. issue is returned as given,
// with IssueInvalidUTF8 added when bytes had to be replaced.
func appendEscaped(dst, src []byte, issue Issue) ([]byte, Issue) {
	dst = append(dst, '"')
	start := 0
	for i := 0; i < len(src); {
		b := src[i]
		if b < utf8.RuneSelf {
			if b >= 0x20 && b != '"' && b != '\\' {
				i++
				continue
			}
			dst = append(dst, src[start:i]...)
			switch b {
			case '\\', '"':
				dst = append(dst, '\\', b)
			case '\b':
				dst = append(dst, '\\', 'b')
			case '\f':
				dst = append(dst, '\\', 'f')
			case '\n':
				dst = append(dst, '\\', 'n')
			case '\r':
				dst = append(dst, '\\', 'r')
			case '\t':
				dst = append(dst, '\\', 't')
			default:
				dst = append(dst, '\\', 'u', '0', '0', hexDigits[b>>4], hexDigits[b&0xF])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRune(src[i:])
		if r == utf8.RuneError && size == 1 {
			dst = append(dst, src[start:i]...)
			dst = append(dst, `\ufffd`...)
			issue |= IssueInvalidUTF8
			i += size
			start = i
			continue
		}
		// U+2028 and U+2029 break JavaScript parsers; encoding/json escapes them.
		if r == '\u2028' || r == '\u2029' {
			dst = append(dst, src[start:i]...)
			dst = append(dst, '\\', 'u', '2', '0', '2', hexDigits[r&0xF])
			i += size
			start = i
			continue
		}
		i += size
	}
	dst = append(dst, src[start:]...)
	return append(dst, '"'), issue
}

// appendCompactJSON appends JSON text without insignificant whitespace, so a
// multi-line json value cannot break the one-message-per-line framing.
func appendCompactJSON(dst, src []byte) ([]byte, Issue) {
	var issue Issue
	if !utf8.Valid(src) {
		src = []byte(string([]rune(string(src))))
		issue |= IssueInvalidUTF8
	}
	inString, escaped := false, false
	for _, b := range src {
		if inString {
			dst = append(dst, b)
			switch {
			case escaped:
				escaped = false
			case b == '\\':
				escaped = true
			case b == '"':
				inString = false
			}
			continue
		}
		switch b {
		case ' ', '\t', '\n', '\r':
			continue
		case '"':
			inString = true
		}
		dst = append(dst, b)
	}
	return dst, issue
}
