package types

import "bytes"

// appendArray turns array_out text (`{1,2}`, `{{"a b",NULL}}`,
// `[0:1]={1,2}`) into nested JSON arrays whose elements go through the
// element type's formatter.
func (t *Type) appendArray(dst, text []byte) ([]byte, Issue) {
	s := text
	if len(s) > 0 && s[0] == '[' {
		// Explicit lower bounds: JSON arrays have none, so they are dropped.
		eq := bytes.IndexByte(s, '=')
		if eq < 0 {
			return appendEscaped(dst, text, IssueMalformed)
		}
		s = s[eq+1:]
	}
	a := arrayParser{s: s, elem: t.Elem, delim: t.Delim}
	mark := len(dst)
	out, ok := a.value(dst)
	if !ok || a.i != len(a.s) {
		return appendEscaped(dst[:mark], text, a.issue|IssueMalformed)
	}
	return out, a.issue
}

type arrayParser struct {
	s       []byte
	i       int
	elem    *Type
	delim   byte
	issue   Issue
	scratch []byte
}

// value parses one brace-enclosed (sub)array.
func (a *arrayParser) value(dst []byte) ([]byte, bool) {
	if a.i >= len(a.s) || a.s[a.i] != '{' {
		return dst, false
	}
	a.i++
	dst = append(dst, '[')
	if a.i < len(a.s) && a.s[a.i] == '}' {
		a.i++
		return append(dst, ']'), true
	}
	for first := true; ; first = false {
		if !first {
			dst = append(dst, ',')
		}
		var ok bool
		a.skipSpace()
		if a.i < len(a.s) && a.s[a.i] == '{' {
			dst, ok = a.value(dst)
		} else {
			dst, ok = a.element(dst)
		}
		if !ok {
			return dst, false
		}
		a.skipSpace()
		if a.i >= len(a.s) {
			return dst, false
		}
		switch a.s[a.i] {
		case a.delim:
			a.i++
		case '}':
			a.i++
			return append(dst, ']'), true
		default:
			return dst, false
		}
	}
}

// element parses one quoted or bare element.
func (a *arrayParser) element(dst []byte) ([]byte, bool) {
	quoted := a.i < len(a.s) && a.s[a.i] == '"'
	if quoted {
		a.i++
	}
	start := a.i
	escaped := false
	for a.i < len(a.s) {
		c := a.s[a.i]
		if c == '\\' {
			escaped = true
			a.i += 2
			continue
		}
		if quoted && c == '"' || !quoted && (c == a.delim || c == '}' || c == '{') {
			break
		}
		a.i++
	}
	if a.i > len(a.s) {
		return dst, false
	}
	raw := a.s[start:a.i]
	if quoted {
		if a.i >= len(a.s) {
			return dst, false
		}
		a.i++ // closing quote
	} else {
		raw = trimSpace(raw)
		if len(raw) == 0 {
			return dst, false
		}
		if !escaped && isNullWord(raw) {
			return append(dst, "null"...), true
		}
	}
	if escaped {
		a.scratch = unescapeBackslashes(a.scratch[:0], raw)
		raw = a.scratch
	}
	var issue Issue
	dst, issue = a.elem.AppendJSON(dst, raw)
	a.issue |= issue
	return dst, true
}

func (a *arrayParser) skipSpace() {
	for a.i < len(a.s) && isSpace(a.s[a.i]) {
		a.i++
	}
}

func isNullWord(b []byte) bool {
	return len(b) == 4 && (b[0]|0x20) == 'n' && (b[1]|0x20) == 'u' && (b[2]|0x20) == 'l' && (b[3]|0x20) == 'l'
}

func isSpace(c byte) bool {
	return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f'
}

func trimSpace(b []byte) []byte {
	for len(b) > 0 && isSpace(b[0]) {
		b = b[1:]
	}
	for len(b) > 0 && isSpace(b[len(b)-1]) {
		b = b[:len(b)-1]
	}
	return b
}

func unescapeBackslashes(dst, src []byte) []byte {
	for i := 0; i < len(src); i++ {
		if src[i] == '\\' && i+1 < len(src) {
			i++
		}
		dst = append(dst, src[i])
	}
	return dst
}

// appendHstore turns hstore output (`"a"=>"1", "b"=>NULL`) into a JSON
// object of string values.
func appendHstore(dst, text []byte) ([]byte, Issue) {
	mark := len(dst)
	h := hstoreParser{s: text}
	dst = append(dst, '{')
	var issue Issue
	for first := true; ; first = false {
		h.skipSpace()
		if h.i == len(h.s) {
			break
		}
		if !first {
			if !h.expect(',') {
				return appendEscaped(dst[:mark], text, issue|IssueMalformed)
			}
			h.skipSpace()
			dst = append(dst, ',')
		}
		key, ok := h.quoted()
		if !ok {
			return appendEscaped(dst[:mark], text, issue|IssueMalformed)
		}
		var kIssue Issue
		dst, kIssue = appendEscaped(dst, key, 0)
		issue |= kIssue
		h.skipSpace()
		if !h.expect('=') || !h.expect('>') {
			return appendEscaped(dst[:mark], text, issue|IssueMalformed)
		}
		h.skipSpace()
		dst = append(dst, ':')
		if h.i+4 <= len(h.s) && isNullWord(h.s[h.i:h.i+4]) {
			h.i += 4
			dst = append(dst, "null"...)
			continue
		}
		val, ok := h.quoted()
		if !ok {
			return appendEscaped(dst[:mark], text, issue|IssueMalformed)
		}
		var vIssue Issue
		dst, vIssue = appendEscaped(dst, val, 0)
		issue |= vIssue
	}
	return append(dst, '}'), issue
}

type hstoreParser struct {
	s       []byte
	i       int
	scratch []byte
}

func (h *hstoreParser) skipSpace() {
	for h.i < len(h.s) && isSpace(h.s[h.i]) {
		h.i++
	}
}

func (h *hstoreParser) expect(c byte) bool {
	if h.i < len(h.s) && h.s[h.i] == c {
		h.i++
		return true
	}
	return false
}

// quoted reads a double-quoted string with backslash escapes. The result is
// valid until the next call.
func (h *hstoreParser) quoted() ([]byte, bool) {
	if !h.expect('"') {
		return nil, false
	}
	h.scratch = h.scratch[:0]
	for h.i < len(h.s) {
		c := h.s[h.i]
		switch {
		case c == '\\' && h.i+1 < len(h.s):
			h.scratch = append(h.scratch, h.s[h.i+1])
			h.i += 2
		case c == '"':
			h.i++
			return h.scratch, true
		default:
			h.scratch = append(h.scratch, c)
			h.i++
		}
	}
	return nil, false
}
