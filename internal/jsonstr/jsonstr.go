// Package jsonstr decodes JSON strings in place, for the hand-written
// readers of wal2json's messages and of the tap's own Singer messages.
package jsonstr

import (
	"errors"
	"unicode/utf16"
	"unicode/utf8"
)

// ErrSyntax is a malformed string.
var ErrSyntax = errors.New("malformed JSON string")

// AppendUnquoted appends the contents of the JSON string whose opening
// quote is data[i] to dst, escapes decoded as encoding/json decodes them (a
// lone surrogate becomes U+FFFD). It returns dst and the index just past
// the closing quote.
func AppendUnquoted(dst, data []byte, i int) ([]byte, int, error) {
	if i >= len(data) || data[i] != '"' {
		return dst, i, ErrSyntax
	}
	i++
	for i < len(data) {
		c := data[i]
		switch {
		case c == '"':
			return dst, i + 1, nil
		case c < 0x20:
			return dst, i, ErrSyntax
		case c != '\\':
			dst = append(dst, c)
			i++
			continue
		}
		if i+1 >= len(data) {
			return dst, i, ErrSyntax
		}
		esc := data[i+1]
		i += 2
		switch esc {
		case '"', '\\', '/':
			dst = append(dst, esc)
		case 'b':
			dst = append(dst, '\b')
		case 'f':
			dst = append(dst, '\f')
		case 'n':
			dst = append(dst, '\n')
		case 'r':
			dst = append(dst, '\r')
		case 't':
			dst = append(dst, '\t')
		case 'u':
			r, ok := hex4(data, i)
			if !ok {
				return dst, i, ErrSyntax
			}
			i += 4
			if utf16.IsSurrogate(r) {
				pair := utf8.RuneError
				if i+1 < len(data) && data[i] == '\\' && data[i+1] == 'u' {
					low, ok := hex4(data, i+2)
					if !ok {
						return dst, i, ErrSyntax
					}
					// A second escape that does not complete the pair is
					// read on its own.
					if d := utf16.DecodeRune(r, low); d != utf8.RuneError {
						pair = d
						i += 6
					}
				}
				r = pair
			}
			dst = utf8.AppendRune(dst, r)
		default:
			return dst, i, ErrSyntax
		}
	}
	return dst, i, ErrSyntax
}

func hex4(data []byte, i int) (rune, bool) {
	if len(data)-i < 4 {
		return 0, false
	}
	var r rune
	for _, c := range data[i : i+4] {
		switch {
		case c >= '0' && c <= '9':
			r = r<<4 | rune(c-'0')
		case c >= 'a' && c <= 'f':
			r = r<<4 | rune(c-'a'+10)
		case c >= 'A' && c <= 'F':
			r = r<<4 | rune(c-'A'+10)
		default:
			return 0, false
		}
	}
	return r, true
}
