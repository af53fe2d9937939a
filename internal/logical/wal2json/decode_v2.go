// Package wal2json streams a slot through the wal2json output plugin: its
// options and table filter, its two message formats, and the translation of
// its messages into the normalised logical.Event.
package wal2json

import (
	"bytes"
	"errors"
	"fmt"
	"strconv"

	"github.com/tap-postgres/tap-postgres/internal/jsonstr"
	"github.com/tap-postgres/tap-postgres/internal/logical"
)

// Action is a wal2json change kind.
type Action byte

// wal2json actions (format 2 letters; format 1 kinds map onto them).
const (
	ActionBegin    Action = 'B'
	ActionCommit   Action = 'C'
	ActionInsert   Action = 'I'
	ActionUpdate   Action = 'U'
	ActionDelete   Action = 'D'
	ActionTruncate Action = 'T'
	ActionMessage  Action = 'M'
)

// Column is a column value as the decoders read it: strings unescaped,
// numbers and booleans as wal2json wrote them (never through a float).
type Column = logical.Column

// Change is one decoded wal2json message. A decoder reuses a Change's
// buffers: values are valid until the next decode into it.
type Change struct {
	Action    Action
	Schema    string
	Table     string
	Timestamp string
	// Columns is the new row (insert, update); unchanged TOAST values are
	// absent from it.
	Columns []Column
	// Identity is the old key, or the whole old row under REPLICA IDENTITY
	// FULL (update, delete).
	Identity []Column
	// buf holds unescaped strings so that values need no allocation.
	buf []byte
}

// reset empties c for a message of n bytes. Strings are unescaped into buf,
// and values rewritten into PostgreSQL's text form after them; reserving
// twice the message's size up front keeps earlier slices of buf valid (no
// reallocation while decoding).
func (c *Change) reset(n int) {
	c.Action, c.Schema, c.Table, c.Timestamp = 0, "", "", ""
	c.Columns, c.Identity, c.buf = c.Columns[:0], c.Identity[:0], c.buf[:0]
	if need := 2*n + 64; cap(c.buf) < need {
		c.buf = make([]byte, 0, need)
	}
}

// DecodeV2 decodes one wal2json format-version 2 message into c.
func DecodeV2(data []byte, c *Change) error {
	c.reset(len(data))
	s := scanner{data: data}
	err := s.object(func(key []byte) error {
		switch string(key) {
		case "action":
			v, err := s.str(c)
			if err != nil {
				return err
			}
			if len(v) != 1 || !validAction(Action(v[0])) {
				return fmt.Errorf("unknown action %q", v)
			}
			c.Action = Action(v[0])
		case "schema":
			return s.text(c, &c.Schema)
		case "table":
			return s.text(c, &c.Table)
		case "timestamp":
			return s.text(c, &c.Timestamp)
		case "columns":
			c.Columns = c.Columns[:0]
			return s.columns(c, &c.Columns)
		case "identity":
			c.Identity = c.Identity[:0]
			return s.columns(c, &c.Identity)
		default:
			return s.skip()
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("wal2json message: %w", err)
	}
	if s.skipSpace(); s.i != len(s.data) {
		return errors.New("wal2json message: trailing data")
	}
	if c.Action == 0 {
		return errors.New(`wal2json message: no "action"`)
	}
	return nil
}

func validAction(a Action) bool {
	switch a {
	case ActionBegin, ActionCommit, ActionInsert, ActionUpdate, ActionDelete, ActionTruncate, ActionMessage:
		return true
	}
	return false
}

// scanner is a minimal JSON reader for wal2json's flat messages.
type scanner struct {
	data []byte
	i    int
}

var errSyntax = errors.New("malformed JSON")

func (s *scanner) skipSpace() {
	for s.i < len(s.data) {
		switch s.data[s.i] {
		case ' ', '\t', '\n', '\r':
			s.i++
		default:
			return
		}
	}
}

func (s *scanner) expect(c byte) error {
	s.skipSpace()
	if s.i >= len(s.data) || s.data[s.i] != c {
		return errSyntax
	}
	s.i++
	return nil
}

func (s *scanner) peek() byte {
	s.skipSpace()
	if s.i >= len(s.data) {
		return 0
	}
	return s.data[s.i]
}

// object calls field for each key; field must consume the value.
func (s *scanner) object(field func(key []byte) error) error {
	if err := s.expect('{'); err != nil {
		return err
	}
	if s.peek() == '}' {
		s.i++
		return nil
	}
	var keyBuf Change
	for {
		keyBuf.buf = keyBuf.buf[:0]
		key, err := s.str(&keyBuf)
		if err != nil {
			return err
		}
		if err := s.expect(':'); err != nil {
			return err
		}
		if err := field(key); err != nil {
			return err
		}
		switch s.peek() {
		case ',':
			s.i++
		case '}':
			s.i++
			return nil
		default:
			return errSyntax
		}
	}
}

// columns reads an array of {"name","type","typeoid","value"} objects.
func (s *scanner) columns(c *Change, out *[]Column) error {
	if s.peek() == 'n' {
		return s.literal("null")
	}
	return s.array(func() error {
		var col Column
		err := s.object(func(key []byte) error {
			switch string(key) {
			case "name":
				return s.text(c, &col.Name)
			case "type":
				v, err := s.typeName(c)
				col.TypeName = string(v)
				return err
			case "typeoid":
				oid, err := s.oid(c)
				col.TypeOID = oid
				return err
			case "value":
				v, null, err := s.value(c)
				col.Value, col.Null = v, null
				return err
			}
			return s.skip()
		})
		*out = append(*out, col)
		return err
	})
}

// typeName reads a column's type name. wal2json prints a name that
// format_type already quoted (`"char"`, `"odd Schema".mood`) without
// escaping it, which is not always a JSON string: such a name is taken raw,
// up to the key that follows it. The OID beside it is what identifies the
// type; the name only adds the typmod.
func (s *scanner) typeName(c *Change) ([]byte, error) {
	start := s.i
	v, err := s.str(c)
	if err != nil {
		return nil, err
	}
	if b := s.peek(); b == ',' || b == '}' {
		return v, nil
	}
	rest := s.data[s.i:]
	end := -1
	for _, next := range []string{`,"typeoid":`, `,"value":`} {
		if j := bytes.Index(rest, []byte(next)); j >= 0 && (end < 0 || j < end) {
			end = j
		}
	}
	if end < 0 {
		return nil, errSyntax
	}
	s.i += end
	return bytes.TrimSpace(s.data[start:s.i]), nil
}

// oid reads an unsigned 32-bit integer.
func (s *scanner) oid(c *Change) (uint32, error) {
	v, null, err := s.value(c)
	if err != nil || null {
		return 0, err
	}
	n, err := strconv.ParseUint(string(v), 10, 32)
	if err != nil {
		return 0, errSyntax
	}
	return uint32(n), nil
}

// array calls elem for each element; elem must consume it.
func (s *scanner) array(elem func() error) error {
	if err := s.expect('['); err != nil {
		return err
	}
	if s.peek() == ']' {
		s.i++
		return nil
	}
	for {
		if err := elem(); err != nil {
			return err
		}
		switch s.peek() {
		case ',':
			s.i++
		case ']':
			s.i++
			return nil
		default:
			return errSyntax
		}
	}
}

// value reads a column value: a string (unescaped), a number or boolean
// (raw text), or null. Objects and arrays are not wal2json values.
func (s *scanner) value(c *Change) ([]byte, bool, error) {
	switch b := s.peek(); {
	case b == '"':
		v, err := s.str(c)
		return v, false, err
	case b == 'n':
		return nil, true, s.literal("null")
	case b == 't', b == 'f':
		start := s.i
		word := "true"
		if b == 'f' {
			word = "false"
		}
		if err := s.literal(word); err != nil {
			return nil, false, err
		}
		return s.data[start:s.i], false, nil
	case b == '-' || b >= '0' && b <= '9':
		start := s.i
		s.i++
		for s.i < len(s.data) && isNumberByte(s.data[s.i]) {
			s.i++
		}
		return s.data[start:s.i], false, nil
	}
	return nil, false, errSyntax
}

func isNumberByte(b byte) bool {
	return b >= '0' && b <= '9' || b == '.' || b == 'e' || b == 'E' || b == '+' || b == '-'
}

func (s *scanner) literal(word string) error {
	s.skipSpace()
	if len(s.data)-s.i < len(word) || string(s.data[s.i:s.i+len(word)]) != word {
		return errSyntax
	}
	s.i += len(word)
	return nil
}

// text reads a JSON string into dst.
func (s *scanner) text(c *Change, dst *string) error {
	v, err := s.str(c)
	*dst = string(v)
	return err
}

// str reads a JSON string. Strings without escapes are returned as slices
// of the input; others are unescaped into c.buf.
func (s *scanner) str(c *Change) ([]byte, error) {
	s.skipSpace()
	if s.i >= len(s.data) || s.data[s.i] != '"' {
		return nil, errSyntax
	}
	quote := s.i
	for j := quote + 1; j < len(s.data); j++ {
		switch b := s.data[j]; {
		case b == '"':
			s.i = j + 1
			return s.data[quote+1 : j], nil
		case b == '\\':
			from := len(c.buf)
			buf, end, err := jsonstr.AppendUnquoted(c.buf, s.data, quote)
			if err != nil {
				return nil, errSyntax
			}
			c.buf, s.i = buf, end
			return c.buf[from:len(c.buf):len(c.buf)], nil
		case b < 0x20:
			return nil, errSyntax
		}
	}
	return nil, errSyntax
}

// skip consumes any JSON value.
func (s *scanner) skip() error {
	switch b := s.peek(); b {
	case '{':
		return s.object(func([]byte) error { return s.skip() })
	case '[':
		return s.array(s.skip)
	case '"':
		var scratch Change
		_, err := s.str(&scratch)
		return err
	default:
		_, _, err := s.value(&Change{})
		return err
	}
}
